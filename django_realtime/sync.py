"""Run sync code from the event loop without serialising the process.

Channels runs every sync consumer handler of a process in one thread
(channels#2132), so one slow handler stalls every other sync connection.
Here sync handlers run on a pool of ``REALTIME["SYNC_THREADS"]`` threads:
handlers of one connection still run one at a time (the consumer awaits
each), but different connections run in parallel.

asgiref's ``SyncToAsync`` does the hop, so ``async_to_sync()`` inside a
handler finds its way back to the server's event loop, and context variables
(including the consumer's outbox) travel with the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync

from django_realtime.conf import get_setting

__all__ = ["is_pool_thread", "run_sync", "shutdown_executor"]

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_pool_threads: set[int] = set()


def _register_thread() -> None:
    _pool_threads.add(threading.get_ident())


def is_pool_thread(ident: int) -> bool:
    """Return whether the thread ``ident`` runs sync handlers for consumers."""
    return ident in _pool_threads


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=int(get_setting("SYNC_THREADS")),
                    thread_name_prefix="realtime-sync",
                    initializer=_register_thread,
                )
    return _executor


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` on the sync pool and return its result."""
    call = SyncToAsync(fn, thread_sensitive=False, executor=_get_executor())
    return await call(*args, **kwargs)


def shutdown_executor() -> None:
    """Stop the pool; the next :func:`run_sync` starts a new one."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
