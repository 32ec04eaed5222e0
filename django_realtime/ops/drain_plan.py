"""When a drain closes how many connections: its schedule, a pure function.

:func:`plan_batches` takes the number of connections and the drain's
options and returns the batches; :mod:`django_realtime.ops.drain` runs
them on the event loop.
"""

from __future__ import annotations

import math

__all__ = ["plan_batches"]


def plan_batches(
    count: int, batch_size: int, interval: float, deadline: float
) -> list[tuple[float, int]]:
    """Return when (seconds after the start) to close how many of ``count``.

    Batches of ``batch_size`` go every ``interval`` seconds, but the last
    one goes within half the deadline: with more connections than that
    allows, the batches grow. The other half of the deadline is for the
    handlers that are running and the closing handshakes.

    Raises:
        ValueError: ``batch_size`` is not positive, or ``interval`` or
            ``deadline`` is negative.
    """
    if batch_size <= 0 or interval < 0 or deadline < 0:
        raise ValueError(
            "Expected batch_size > 0, interval >= 0 and deadline >= 0, got "
            f"{batch_size!r}, {interval!r} and {deadline!r}."
        )
    if count <= 0:
        return []
    if interval > 0:
        fitting = int(deadline / 2 / interval) + 1
        batch_size = max(batch_size, math.ceil(count / fitting))
    return [
        (number * interval, min(batch_size, count - number * batch_size))
        for number in range(math.ceil(count / batch_size))
    ]
