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

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections

from django_realtime.conf import get_setting

__all__ = ["is_pool_thread", "run_sync", "shutdown_executor"]

T = TypeVar("T")


class _DaemonPool(Executor):
    """Run calls on up to ``size`` daemon threads, started as they are needed.

    ``ThreadPoolExecutor`` joins its threads when the interpreter exits. A
    sync handler waiting in ``async_to_sync()`` for an event loop that the
    server has stopped (daphne on SIGTERM) never returns, so that join would
    hang the process forever. Daemon threads let the process exit; what
    they were doing is abandoned, as with any process that exits.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return its future."""
        future: Future[T] = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        with self._lock:
            if self._shutdown:
                raise RuntimeError("Cannot run sync code: the sync pool is shut down.")
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work,
                    name=f"{self._name}_{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1
        self._calls.put(call)
        return future

    def _work(self) -> None:
        ident = threading.get_ident()
        _pool_threads.add(ident)
        try:
            while (call := self._calls.get()) is not None:
                call()
                del call
                with self._lock:
                    self._idle += 1
        finally:
            _pool_threads.discard(ident)
            # The thread's database connections die with it; close them
            # rather than leave the driver to find them open at collection.
            connections.close_all()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the calls already submitted have run."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()


_executor: _DaemonPool | None = None
_lock = threading.Lock()
_pool_threads: set[int] = set()


def is_pool_thread(ident: int) -> bool:
    """Return whether the thread ``ident`` runs sync handlers for consumers."""
    return ident in _pool_threads


def _get_executor() -> _DaemonPool:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = _DaemonPool(
                    int(get_setting("SYNC_THREADS")), name="realtime-sync"
                )
    return _executor


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` on the sync pool and return its result."""
    # asgiref types the executor as a ThreadPoolExecutor; it only submits.
    executor: Any = _get_executor()
    call = SyncToAsync(fn, thread_sensitive=False, executor=executor)
    return await call(*args, **kwargs)


def shutdown_executor() -> None:
    """Stop the pool; the next :func:`run_sync` starts a new one."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
