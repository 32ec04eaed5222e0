"""How fast a socket of the Game of Life may talk, and how a cell keeps to it.

The server's routes (:mod:`~example_project.life.routing`) close a cell's
socket that sends more than :data:`CELL_RATE` messages a second on average,
in bursts of more than :data:`CELL_BURST`, with the rate-limit close code
4029; a watcher, which has nothing to say, gets :data:`WATCH_RATE` and
:data:`WATCH_BURST`. A cell at full speed on a small board could step
faster than that, so the cell clients pace themselves with a :class:`Pacer`
a little under the server's limit, and are never closed for it.

This module imports nothing of Django: the cell processes use it. The
:class:`Pacer` is pure: it takes the time and returns how long to wait.
"""

from __future__ import annotations

__all__ = [
    "CELL_BURST",
    "CELL_RATE",
    "PACE_BURST",
    "PACE_RATE",
    "WATCH_BURST",
    "WATCH_RATE",
    "Pacer",
]

CELL_RATE = 50.0
"""Messages a second a cell's socket may send on average."""

CELL_BURST = 100.0
"""Messages a cell's socket may send at once: a greeting and hellos to all."""

WATCH_RATE = 1.0
"""Messages a second a watcher's socket may send (it should send none)."""

WATCH_BURST = 5.0
"""Messages a watcher's socket may send at once before it is closed."""

PACE_RATE = CELL_RATE * 0.8
"""The rate cells keep to: under the server's, for network jitter."""

PACE_BURST = CELL_BURST / 2
"""The burst cells allow themselves: half the server's, for network jitter."""


class Pacer:
    """Spread sends so that at most ``rate`` a second go out, ``burst`` at once.

    A token bucket that starts full: each send takes a token, tokens come
    back at ``rate`` a second up to ``burst``. :meth:`take` reserves a token
    and returns how long to wait before sending, so that sends taken in a
    row go out in order, each at its turn.

    Args:
        rate: Sends a second on average.
        burst: Sends at once.
        now: The current time, in seconds on any monotonic clock.

    Raises:
        ValueError: ``rate`` is not positive, or ``burst`` is under 1.
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(
                f"Expected rate > 0 and burst >= 1, got {rate!r} and {burst!r}."
            )
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """Reserve a send at ``now``; return the seconds to wait before it."""
        if now > self.updated:
            self.tokens = min(
                self.burst, self.tokens + (now - self.updated) * self.rate
            )
            self.updated = now
        self.tokens -= 1
        # A debt is paid back at ``rate``: the send waits its turn.
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
