"""Give back what a wave of connections left behind, once it has gone.

A server process grows to hold its busiest moment: the C heap, the tables
that held every connection, and the Redis connections its channel layer
opened while many consumers joined groups at once. When the open WebSocket
connections have fallen by a quarter of their peak (and by at least
:data:`MIN_DROP`), and no more have closed for :data:`QUIET` seconds, the
process:

- closes the idle pooled connections of each channel layer that can
  (``release_idle()``, as :class:`~django_realtime.layers.redis.RedisChannelLayer`
  does; busy ones stay, and the pool opens new ones on demand), and lets
  the layers shrink their tables of channels and groups;
- empties CPython's cache of attribute lookups, which holds on to names
  made for one lookup, and runs a full garbage collection (what the
  connections left in reference cycles);
- shrinks the tables sized for the crowd (a dict or set never shrinks by
  itself): the drain's registry of connections, asyncio's tables of tasks,
  transports and registered sockets, and uvicorn's of connections and
  their tasks;
- asks glibc to return free heap pages to the system (``malloc_trim(0)``,
  in a worker thread: it walks the heap).

The heap keeps its size after that, with the pages returned; new
allocations land in free chunks all over it and bring pages back. So the
trim is repeated :data:`RETRIM` seconds later, then at intervals that
double up to :data:`RETRIM_MAX`, for as long as the heap holds more free
memory than used; a new wave of connections fills it again and ends the
repetition, and the next drop starts it over. The trim after a wave of
10,000 connections took 27 ms here (it returns 300 MiB of pages); a
repeated one, a few ms. It runs in a worker thread, but holds glibc's
heap lock meanwhile: the event loop waits if it allocates then.

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
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from django_realtime._compact import compact, compact_weak

__all__ = [
    "MIN_DROP",
    "QUIET",
    "RETRIM",
    "RETRIM_MAX",
    "closed",
    "heap",
    "opened",
    "release",
]

logger = logging.getLogger(__name__)

#: The fewest connections that must have gone since the peak.
MIN_DROP = 1000
#: Seconds without a further close before the release runs.
QUIET = 5.0
#: Seconds from a release to the first repeated trim of the heap.
RETRIM = 10.0
#: The longest interval between repeated trims, in seconds.
RETRIM_MAX = 600.0

_peak = 0
_timer: asyncio.TimerHandle | None = None
_retrim: asyncio.TimerHandle | None = None
_retrim_delay = RETRIM


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _find_malloc_trim() -> Callable[[int], int] | None:
    trim = getattr(_libc(), "malloc_trim", None)  # glibc only (not musl, macOS)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _find_mallinfo2() -> Callable[[], _MallInfo2] | None:
    mallinfo2 = getattr(_libc(), "mallinfo2", None)  # glibc 2.33 and later
    if mallinfo2 is None:
        return None
    mallinfo2.argtypes = []
    mallinfo2.restype = _MallInfo2
    return mallinfo2  # type: ignore[no-any-return]


_malloc_trim = _find_malloc_trim()
_mallinfo2 = _find_mallinfo2()


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
    _stop_retrims()
    # Each close postpones it: release once the wave is over.
    _timer = asyncio.get_running_loop().call_later(QUIET, _start)


def _start() -> None:
    global _timer
    _timer = None
    _spawn(release())


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _running.add(task)
    task.add_done_callback(_running.discard)


_running: set[asyncio.Future[Any]] = set()


def _stop_retrims() -> None:
    global _retrim
    if _retrim is not None:
        _retrim.cancel()
        _retrim = None


def _schedule_retrim(delay: float) -> None:
    global _retrim, _retrim_delay
    _stop_retrims()
    _retrim_delay = delay
    _retrim = asyncio.get_running_loop().call_later(delay, _start_retrim)


def _start_retrim() -> None:
    global _retrim
    _retrim = None
    _spawn(_retrim_heap())


def heap() -> tuple[int, int] | None:
    """Return the bytes glibc's heap has in use and free; ``None`` if unknown.

    Blocks glibc mapped on their own (large ones) count as in use. Known on
    glibc 2.33 and later (``mallinfo2()``).
    """
    if _mallinfo2 is None:
        return None
    info = _mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


async def _retrim_heap() -> None:
    """Trim again while the heap holds more free memory than used."""
    figures = heap()
    if figures is not None and figures[1] <= figures[0]:
        logger.debug("The C heap is in use again: no more trims.")
        return
    started = time.perf_counter()
    await _trim()
    logger.debug(
        "Trimmed the C heap again (%.0f ms).", (time.perf_counter() - started) * 1000
    )
    _schedule_retrim(min(_retrim_delay * 2, RETRIM_MAX))


async def _trim() -> bool:
    """Run ``malloc_trim(0)`` in a worker thread; return whether it gave any."""
    if _malloc_trim is None:
        return False
    loop = asyncio.get_running_loop()
    return bool(await loop.run_in_executor(None, _malloc_trim, 0))


def _compact_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Shrink asyncio's tables of tasks, transports and registered sockets.

    These are private attributes of asyncio (Python 3.11 to 3.13); one that
    is missing in another version is skipped.
    """
    names = ("_all_tasks", "_scheduled_tasks")  # 3.11; 3.12 and later
    tasks = [getattr(asyncio.tasks, name, None) for name in names]
    compact_weak(*tasks, getattr(loop, "_transports", None))
    registered = getattr(getattr(loop, "_selector", None), "_fd_to_key", None)
    if isinstance(registered, dict):
        compact(registered)


def _clear_type_cache() -> None:
    """Empty CPython's cache of attribute lookups on types.

    It keeps a reference to the name of each lookup it caches, in a slot
    chosen by the name's address: a name made for one lookup (a C
    function's ``PyObject_CallMethod(obj, "dst", ...)``, as
    ``datetime.timetuple()`` does for each handshake's Date header) takes a
    slot of its own and stays, one small block in a page of its own, until
    another name takes the slot. After a wave, up to 4,096 of them keep
    pages from the trim; emptied, the cache fills again on demand.
    """
    clear = getattr(sys, "_clear_internal_caches", None) or getattr(
        sys, "_clear_type_cache", None
    )
    if clear is not None:
        clear()


def _compact_server() -> None:
    """Shrink uvicorn's tables of its connections and their tasks.

    They are on its server state, which the ASGI interface does not show;
    uvicorn's SIGINT handler is a method of its ``Server``, which holds it.
    Under another server (or uvicorn in a thread) nothing is found.
    """
    owner = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    state = getattr(owner, "server_state", None)
    tables = [getattr(state, name, None) for name in ("connections", "tasks")]
    compact(*(table for table in tables if isinstance(table, set)))


async def release() -> None:
    """Give back what the connections left now (see the module); log it."""
    global _peak
    from django_realtime import drain
    from django_realtime.layers import channel_layers

    was = _peak
    _peak = drain.open_count()
    # Idle layer connections close (and the layers' tables shrink); the
    # type cache lets go of its one-off names; what the connections left
    # in reference cycles (freed only by a full collection, which would
    # otherwise come much later) is freed; then the tables sized for the
    # crowd (asyncio's hold tasks and transports until they are freed)
    # shrink to their contents, and the heap is trimmed.
    for layer in list(channel_layers.backends.values()):
        release_idle = getattr(layer, "release_idle", None)
        if release_idle is not None:
            try:
                await release_idle()
            except Exception:
                logger.warning(
                    "Could not close the idle connections of %r.", layer, exc_info=True
                )
    _clear_type_cache()
    gc.collect()
    drain.compact()
    _compact_event_loop(asyncio.get_running_loop())
    _compact_server()
    started = time.perf_counter()
    trimmed = await _trim()
    took = time.perf_counter() - started
    if _malloc_trim is not None:
        _schedule_retrim(RETRIM)
    logger.info(
        "WebSocket connections fell from %d to %d: %s the C heap (%.0f ms), "
        "shrank the tables that held them and closed the channel layers' idle "
        "connections.",
        was,
        _peak,
        "trimmed" if trimmed else "nothing to trim in",
        took * 1000,
    )
