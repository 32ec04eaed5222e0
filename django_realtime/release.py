"""Give back what a wave of connections left behind, once it has gone.

A server process grows to hold its busiest moment: the C heap, and the
Redis connections its channel layer opened while many consumers joined
groups at once. When the open WebSocket connections have fallen by a
quarter of their peak (and by at least :data:`MIN_DROP`), and no more have
closed for :data:`QUIET` seconds, the process:

- runs a full garbage collection (what the connections left in reference
  cycles) and asks glibc to return free heap pages to the system
  (``malloc_trim(0)``, in a worker thread: it walks the heap);
- closes the idle pooled connections of each channel layer that can
  (``release_idle()``, as :class:`~django_realtime.layers.redis.RedisChannelLayer`
  does); busy ones stay, and the pool opens new ones on demand.

CPython's own small-object allocator (pymalloc) returns an arena only when
every object in it is free, and a few long-lived objects allocated at the
peak keep most arenas: after 10,000 connections come and go, the process
keeps the RSS of its peak. Run long-lived servers with
``PYTHONMALLOC=malloc`` so that every object lives on the heap that
``malloc_trim`` returns; ``docs/performance.rst`` ("Soak") has the figures.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["MIN_DROP", "QUIET", "closed", "opened", "release"]

logger = logging.getLogger(__name__)

#: The fewest connections that must have gone since the peak.
MIN_DROP = 1000
#: Seconds without a further close before the release runs.
QUIET = 5.0

_peak = 0
_timer: asyncio.TimerHandle | None = None


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def opened(count: int) -> None:
    """Note that ``count`` WebSocket connections are open after an accept."""
    global _peak
    if count > _peak:
        _peak = count


def closed(count: int) -> None:
    """Note that ``count`` connections are open after one ended; maybe release."""
    global _timer
    drop = _peak - count
    if drop < MIN_DROP or drop * 4 < _peak:
        return
    if _timer is not None:
        _timer.cancel()
    # Each close postpones it: release once the wave is over.
    _timer = asyncio.get_running_loop().call_later(QUIET, _start)


def _start() -> None:
    global _timer
    _timer = None
    task = asyncio.ensure_future(release())
    _running.add(task)
    task.add_done_callback(_running.discard)


_running: set[asyncio.Future[Any]] = set()


async def release() -> None:
    """Trim the C heap and close idle layer connections now; log what it gave."""
    global _peak
    from django_realtime import drain
    from django_realtime.layers import channel_layers

    was = _peak
    _peak = drain.open_count()
    # What the connections left in reference cycles is freed only by a full
    # collection, which would otherwise come much later: free it first.
    gc.collect()
    trimmed = False
    if _malloc_trim is not None:
        trim = _malloc_trim
        trimmed = bool(await asyncio.get_running_loop().run_in_executor(None, trim, 0))
    for layer in list(channel_layers.backends.values()):
        release_idle = getattr(layer, "release_idle", None)
        if release_idle is not None:
            try:
                await release_idle()
            except Exception:
                logger.warning(
                    "Could not close the idle connections of %r.", layer, exc_info=True
                )
    logger.info(
        "WebSocket connections fell from %d to %d: %s the C heap and closed the "
        "channel layers' idle connections.",
        was,
        _peak,
        "trimmed" if trimmed else "nothing to trim in",
    )
