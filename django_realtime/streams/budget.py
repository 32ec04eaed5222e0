"""How much history one connection may replay, per unit of time.

A subscribe that resumes from an old position costs a history read and
sends the window after it: a client could ask for that over and over. A
:class:`ReplayBudget` is a token bucket counted in bytes that may go into
debt: a read is allowed while the budget is not in debt, its cost is
charged once the read is done, and the next read waits until the debt is
paid back at ``rate`` bytes a second. So over any span of ``t`` seconds a
connection replays at most ``burst + rate * t`` bytes, plus one read.

Pure: times are passed in as ``now`` (seconds on a clock that does not go
backwards).
"""

from __future__ import annotations

__all__ = ["ReplayBudget"]


class ReplayBudget:
    """Allow replays of ``rate`` bytes a second on average, ``burst`` at once.

    Args:
        rate: Bytes a second the budget refills by (``None``: no limit).
        burst: Most bytes held (the budget starts full).
        now: The current time in seconds.

    Raises:
        ValueError: ``rate`` or ``burst`` is not positive.
    """

    __slots__ = ("_full_at", "burst", "rate")

    def __init__(self, rate: float | None, burst: float, now: float) -> None:
        if (rate is not None and not rate > 0) or not burst > 0:
            raise ValueError(
                f"Expected a replay rate > 0 (or None) and a burst > 0, got "
                f"{rate!r} and {burst!r}."
            )
        self.rate = rate
        self.burst = float(burst)
        # When the budget is (or was) full again: one number, so that
        # ready_at() and ready() agree exactly.
        self._full_at = now

    def ready(self, now: float) -> bool:
        """Return whether a read may start at ``now`` (the budget is not in debt)."""
        return now >= self.ready_at(now)

    def ready_at(self, now: float) -> float:
        """Return when the budget is out of debt (``now`` if it is already)."""
        if self.rate is None:
            return now
        return max(now, self._full_at - self.burst / self.rate)

    def charge(self, cost: float, now: float) -> None:
        """Count ``cost`` bytes replayed at ``now`` (the budget may go into debt)."""
        if self.rate is not None:
            self._full_at = max(self._full_at, now) + cost / self.rate
