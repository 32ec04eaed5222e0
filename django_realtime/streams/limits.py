"""What one stream connection may hold and replay, and the process's counters."""

from __future__ import annotations

from dataclasses import dataclass

from django_realtime.ops import metrics
from django_realtime.streams.budget import ReplayBudget

__all__ = ["SessionLimits", "StreamStats", "stats"]


@dataclass
class StreamStats:
    """Counters of this process's stream connections (for metrics).

    Attributes:
        slow_catch_ups: Times a connection's queue overflowed and its queued
            publications were dropped, to be sent again from history.
        slow_closes: Connections closed with ``CLOSE_TOO_SLOW``.
        dropped_publications: Queued publications dropped by either.
        replays_paced: Connections whose history reads had to wait for
            their replay budget.
    """

    slow_catch_ups: int = 0
    slow_closes: int = 0
    dropped_publications: int = 0
    replays_paced: int = 0


#: The process's counters.
stats = StreamStats()


def _metrics_source() -> list[tuple[str, str, int]]:
    return [
        ("slow_clients", "catch_up", stats.slow_catch_ups),
        ("slow_clients", "closed", stats.slow_closes),
        ("rate_limited", "replay_paced", stats.replays_paced),
    ]


metrics.add_source(_metrics_source)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one connection may hold and replay.

    Attributes:
        max_subscriptions: Most streams subscribed at once.
        max_queued: Most publications waiting to be sent.
        max_queued_bytes: Most payload characters waiting to be sent.
        slow_client_policy: ``"catch_up"`` or ``"close"``, over either.
        replay_rate: Bytes a second of history a connection may replay on
            average (``None``: no limit).
        replay_burst: Bytes of history it may replay at once.

    Raises:
        ValueError: a limit is out of range, or the policy is unknown.
    """

    max_subscriptions: int = 100
    max_queued: int = 1000
    max_queued_bytes: int = 4 * 1024 * 1024
    slow_client_policy: str = "catch_up"
    replay_rate: float | None = 256 * 1024
    replay_burst: float = 1024 * 1024

    def __post_init__(self) -> None:
        if self.slow_client_policy not in ("catch_up", "close"):
            raise ValueError(
                "Expected slow_client_policy 'catch_up' or 'close', got "
                f"{self.slow_client_policy!r}."
            )
        for name in ("max_subscriptions", "max_queued", "max_queued_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(
                    f"Expected {name} to be an integer >= 1, got {value!r}."
                )
        # The budget checks the replay limits.
        ReplayBudget(self.replay_rate, self.replay_burst, 0.0)

    @property
    def max_pending(self) -> int:
        """Return how many subscribes and unsubscribes may wait for their answer.

        Twice ``max_subscriptions``, and at least 10.
        """
        return max(2 * self.max_subscriptions, 10)
