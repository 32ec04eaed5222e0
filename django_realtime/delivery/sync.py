"""Run sync code from the event loop without serialising the process.

Channels runs every sync consumer handler of a process in one thread
(channels#2132), so one slow handler stalls every other sync connection.
Here sync handlers run on a pool of ``REALTIME["SYNC_THREADS"]`` threads:
handlers of one connection still run one at a time (the consumer awaits
each), but different connections run in parallel.

The hop is the price of every sync handler, so it is kept short: the call
goes to the pool through one queue, and results come back to the event loop
in batches, with one wake-up of the loop for however many calls finished
meanwhile (asgiref's ``SyncToAsync`` wakes the loop once per call, and costs
about ten times as much per call). What ``SyncToAsync`` promises still
holds:

- context variables (including the consumer's outbox) travel into the call,
  and changes the call makes to them are copied back afterwards;
- ``async_to_sync()`` inside the call runs its coroutine on the caller's
  event loop, so channel layer connections and locks stay on their loop;
- a cancelled caller waits for the call to finish before the cancellation
  goes on, so handlers of one consumer never overlap.

Context variables cross threads the way asgiref moves them, with the
asgiref internals in :mod:`django_realtime._compat.asgiref`: that is also
what hands the data of an ``asgiref.local.Local`` (where Django keeps the
active translation, time zone and urlconf) to the other thread, which a plain
copy of the context would leave behind. With an asgiref outside the versions
those were checked against, calls go to the same pool through asgiref's
public ``SyncToAsync`` instead: the same promises, at its cost per call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections

from django_realtime._compat import asgiref as _asgiref
from django_realtime.conf import get_setting

__all__ = ["is_pool_thread", "run_sync", "shutdown_executor"]

T = TypeVar("T")


class _Call:
    """One call of a sync function on the pool, and what became of it."""

    __slots__ = (
        "args",
        "context",
        "done",
        "error",
        "fn",
        "future",
        "kwargs",
        "result",
        "returns",
        "waiter",
    )

    def __init__(
        self,
        returns: _Returns,
        future: asyncio.Future[Any],
        context: contextvars.Context,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.returns = returns
        self.future = future
        self.context = context
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.result: Any = None
        self.error: BaseException | None = None
        # Set on the event loop once the call has finished.
        self.done = False
        # A future for a cancelled caller waiting for the call to finish.
        self.waiter: asyncio.Future[None] | None = None

    def run(self) -> None:
        """Call the function in this (pool) thread, then hand the result back."""
        # Where async_to_sync() inside the call finds the caller's loop.
        _asgiref.bind_event_loop(self.returns.loop)
        try:
            self.result = self.context.run(self._call)
        except BaseException as exc:
            self.error = exc
        self.returns.add(self)

    def _call(self) -> Any:
        # Inside the caller's context: make it this thread's own first.
        _asgiref.adopt_context(self.context)
        return self.fn(*self.args, **self.kwargs)

    def settle(self) -> None:
        """Resolve the caller's future (on the event loop)."""
        self.done = True
        future = self.future
        if not future.done():
            if self.error is None:
                future.set_result(self.result)
            else:
                future.set_exception(self.error)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Returns:
    """Finished calls on their way back to one event loop, in batches.

    The first call to finish schedules one :meth:`drain` on the loop; calls
    that finish before it runs join the same batch without waking the loop
    again.
    """

    __slots__ = ("__weakref__", "_calls", "_lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._calls: list[_Call] = []

    def add(self, call: _Call) -> None:
        """Queue a finished call (in a pool thread); wake the loop if needed."""
        with self._lock:
            self._calls.append(call)
            if len(self._calls) > 1:
                return
        # RuntimeError: the loop is closed, nobody waits for the result.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Settle every finished call (on the event loop)."""
        with self._lock:
            calls, self._calls = self._calls, []
        for call in calls:
            call.settle()


class _DaemonPool:
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

    def put(self, call: Callable[[], None]) -> None:
        """Queue ``call``, starting a thread if none is idle and there is room."""
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

    def shutdown(self) -> None:
        """Stop the threads once the calls already queued have run."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            thread.join()


_executor: _DaemonPool | None = None
_lock = threading.Lock()
_pool_threads: set[int] = set()
_returns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Returns] = (
    weakref.WeakKeyDictionary()
)


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


def _returns_to(loop: asyncio.AbstractEventLoop) -> _Returns:
    try:
        return _returns[loop]
    except KeyError:
        returns = _returns[loop] = _Returns(loop)
        return returns


class _OneCall(concurrent.futures.Executor):
    """Run one call of asgiref's ``SyncToAsync`` on the pool; say when it ends.

    ``SyncToAsync`` gives up on a call when its caller is cancelled;
    :attr:`finished` lets the caller wait for the call itself, as
    :func:`run_sync` promises.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.finished: asyncio.Future[None] = loop.create_future()

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args, **kwargs)`` on the pool."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as exc:
                        future.set_exception(exc)
            finally:
                # RuntimeError: the loop is closed, nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    self.loop.call_soon_threadsafe(self._finish)

        _get_executor().put(run)
        return future

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


async def _run_sync_public(fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    """Do what :func:`run_sync` does through asgiref's public ``SyncToAsync``."""
    executor = _OneCall(asyncio.get_running_loop())
    call: Any = SyncToAsync(
        functools.partial(fn, *args, **kwargs),
        thread_sensitive=False,
        executor=executor,  # type: ignore[arg-type]
    )
    try:
        result: T = await call()
    except asyncio.CancelledError:
        await executor.finished
        raise
    return result


#: Whether calls take the short hop (asgiref internals in their window) or
#: go through asgiref's public SyncToAsync.
_short_hop = _asgiref.SUPPORTED


async def run_sync(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` on the sync pool and return its result.

    If the caller is cancelled meanwhile, it waits for the call to finish,
    then the cancellation goes on.
    """
    if not _short_hop:
        return await _run_sync_public(fn, args, kwargs)
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    call = _Call(_returns_to(loop), future, context, fn, args, kwargs)
    _get_executor().put(call.run)
    try:
        return await future
    except asyncio.CancelledError:
        if not call.done:
            call.waiter = loop.create_future()
            await call.waiter
        raise
    finally:
        # Changes the call made to context variables, back in the caller.
        _asgiref.adopt_context(context)


def shutdown_executor() -> None:
    """Stop the pool; the next :func:`run_sync` starts a new one."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown()
