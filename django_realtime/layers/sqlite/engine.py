"""The thread that does a SQLite file's I/O, off the event loops.

One thread per user of the file (a channel layer, a history store) owns
its connection to the file and its wake-up socket. Event loops hand it
operations through a queue; it runs every operation waiting at that moment
in one transaction (each in a savepoint, so that one failing does not undo
the others), settles the callers' futures once the transaction has
committed, then pokes the processes it wrote for. It calls its ``look``
hook when poked, when asked (:meth:`Engine.want`), and every
``poll_interval`` seconds in case a poke was missed.

A caller's future is settled only after ``COMMIT`` returned: an operation
reported done is in the file, and one that raised is not.

Used by :class:`~django_realtime.layers.sqlite.SQLiteChannelLayer` and
:class:`~django_realtime.streams.stores.sqlite.SQLiteHistoryStore`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import select
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django_realtime.exceptions import ChannelLayerError
from django_realtime.layers.sqlite.wake import DEAD, WakeSocket

__all__ = ["ANY_PROCESS", "Engine", "Operation", "Work"]

logger = logging.getLogger("django_realtime.layers.sqlite")

#: A target meaning "whichever process reads this normal channel".
ANY_PROCESS = ""

#: Run in the engine's transaction at ``now``; return a result and the
#: processes to poke once committed.
Operation = Callable[[sqlite3.Connection, float], tuple[Any, set[str]]]

# SQLite connections copied into a forked child: never used, never closed.
_ABANDONED: list[sqlite3.Connection] = []

#: Run in a transaction of its own at ``now``.
Work = Callable[[sqlite3.Connection, float], Any]


def _nothing(connection: sqlite3.Connection, now: float) -> None:
    return None


@dataclass(slots=True)
class _Call:
    operation: Operation
    future: asyncio.Future[Any] | None


class Engine:
    """Run operations on a file, in a thread of its own.

    Args:
        path: The database file.
        wake: The wake-up socket of this user of the file.
        clock: Return wall-clock seconds (``time.time`` or a test's clock).
        timeout: Seconds to wait for another process's write lock.
        poll_interval: Seconds between two looks when no poke came.
        sweep_interval: Seconds between two calls of ``sweep``.
        schema: Create the tables (run once per connection, outside any
            transaction).
        look: Called on the engine's thread when poked, asked, or every
            ``poll_interval``; it runs its own transactions.
        sweep: Delete expired state, in a transaction.
        on_dead: Called with the id of a process found dead by a poke.
        name: The thread's name.
    """

    def __init__(
        self,
        *,
        path: Path,
        wake: WakeSocket,
        clock: Callable[[], float],
        timeout: float,
        poll_interval: float,
        sweep_interval: float,
        schema: Callable[[sqlite3.Connection], None],
        look: Callable[[Engine], None],
        sweep: Work = _nothing,
        on_dead: Callable[[Engine, str], None] | None = None,
        name: str = "sqlite",
    ) -> None:
        self.path = path
        self.wake = wake
        self.name = name
        self._schema = schema
        self._look = look
        self._sweep = sweep
        self._on_dead = on_dead
        self.clock = clock
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self._calls: collections.deque[_Call] = collections.deque()
        self._signal_r, self._signal_w = socket.socketpair()
        self._signal_r.setblocking(False)
        self._signal_w.setblocking(False)
        # An engine dropped without stop() (its thread never started) closes
        # its sockets. Not at exit: a socket file left behind by a process
        # that ended tells the others that its channels are gone.
        self._finalizer = weakref.finalize(
            self, _close_sockets, self._signal_r, self._signal_w, wake
        )
        self._finalizer.atexit = False
        self._want = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    # From any thread

    def submit(self, operation: Operation) -> asyncio.Future[Any]:
        """Queue ``operation``; return a future of its result on this loop."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.append(_Call(operation, future))
        self._signal()
        return future

    def post(self, operation: Operation) -> None:
        """Queue ``operation`` with nobody waiting for its result."""
        self._calls.append(_Call(operation, None))
        self._signal()

    def want(self) -> None:
        """Ask for a look: a receiver started waiting."""
        if self._want and self._thread is not None:
            return  # A look is due already, and will see this receiver.
        self._want = True
        self._signal()

    def stop(self) -> None:
        """Ask the thread to finish the queued work, close and end.

        An engine whose thread never started closes its sockets at once.
        """
        with self._start_lock:
            self._stopping = True
            if self._thread is None:
                self._close()
                return
        self._poke_self()

    def abandon(self) -> None:
        """Let go of the engine in a process forked from the one that ran it.

        Its thread stayed in the parent. The child closes its copies of the
        sockets without removing the parent's socket file, and never touches
        the copied SQLite connection (closing it could disturb the parent's
        file): it is kept unused until the process ends.
        """
        self._finalizer.detach()
        self._signal_r.close()
        self._signal_w.close()
        self.wake.detach()
        if self._connection is not None:
            _ABANDONED.append(self._connection)
            self._connection = None

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; return whether it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # Internals: callers' side

    def _signal(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run,
                        name=f"{self.name}-{self.wake.process_id}",
                        daemon=True,
                    )
                    self._thread.start()
        self._poke_self()

    def _poke_self(self) -> None:
        # A signal may already be pending, or the engine may have closed.
        with contextlib.suppress(OSError):
            self._signal_w.send(b"!")

    # Internals: the thread

    def _run(self) -> None:
        next_poll = next_sweep = time.monotonic()
        try:
            while True:
                timeout = max(0.0, min(next_poll, next_sweep) - time.monotonic())
                fds = [self._signal_r.fileno(), self.wake.fileno()]
                select.select(fds, [], [], timeout)
                try:
                    next_poll, next_sweep = self._turn(next_poll, next_sweep)
                except Exception:
                    # A bug in a hook must not end the thread: every later
                    # call would wait for it forever.
                    logger.exception("SQLite engine of %s failed a turn.", self.path)
                    next_poll = time.monotonic() + self.poll_interval
                if self._stopping and not self._calls:
                    break
        finally:
            self._close()

    def _turn(self, next_poll: float, next_sweep: float) -> tuple[float, float]:
        """Do what is due; return when the next poll and sweep are."""
        poked = self.wake.drain() if self.wake.bound else False
        self._drain_signals()
        if self._calls:
            self._run_calls()
        monotonic = time.monotonic()
        if monotonic >= next_sweep:
            next_sweep = monotonic + self.sweep_interval
            self.transaction(self._sweep)
        if poked or self._want or monotonic >= next_poll:
            self._want = False
            next_poll = monotonic + self.poll_interval
            self._look(self)
        return next_poll, next_sweep

    def _drain_signals(self) -> None:
        while True:
            try:
                if not self._signal_r.recv(4096):
                    return
            except (BlockingIOError, InterruptedError):
                return

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                self._schema(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def transaction(self, work: Work) -> Any:
        """Run ``work`` in a write transaction; log and return None on error.

        Call it on the engine's thread only (from the hooks).
        """
        try:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection, self.clock())
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            logger.warning("SQLite layer at %s: %s; will retry.", self.path, error)
            return None
        return result

    def _run_calls(self) -> None:
        calls = []
        while self._calls:
            calls.append(self._calls.popleft())
        outcomes: list[tuple[_Call, Any, BaseException | None]] = []
        targets: set[str] = set()
        try:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            self._fail(calls, error)
            return
        try:
            now = self.clock()
            for call in calls:
                connection.execute("SAVEPOINT call")
                try:
                    result, wrote_for = call.operation(connection, now)
                except Exception as exc:
                    connection.execute("ROLLBACK TO call")
                    connection.execute("RELEASE call")
                    outcomes.append((call, None, exc))
                else:
                    connection.execute("RELEASE call")
                    outcomes.append((call, result, None))
                    targets |= wrote_for
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            self._fail(calls, error)
            return
        for call, result, failure in outcomes:
            _settle(call.future, result, failure)
        if targets:
            self._poke(targets)

    def _fail(self, calls: list[_Call], error: sqlite3.Error) -> None:
        text = str(error)
        if "locked" in text or "busy" in text:
            text += (
                f" (another process held the file's lock for more than {self.timeout}s)"
            )
        failure = ChannelLayerError(
            f"Could not write to the SQLite file {self.path}: {text}. Nothing "
            "of this operation was written."
        )
        for call in calls:
            _settle(call.future, None, failure)

    def _poke(self, targets: set[str]) -> None:
        me = self.wake.process_id
        processes = set(targets)
        if ANY_PROCESS in processes:
            processes.discard(ANY_PROCESS)
            processes.update(self.wake.processes())
            if self.wake.bound:
                self._want = True
        if me in processes:
            processes.discard(me)
            self._want = True
        for process in processes:
            if self.wake.poke(process) == DEAD:
                if self._on_dead is not None:
                    self._on_dead(self, process)
                self.wake.forget(process)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self.wake.close()
        self._signal_r.close()
        self._signal_w.close()
        for call in self._calls:
            _settle(call.future, None, ChannelLayerError("The layer has closed."))


def _close_sockets(*sockets: socket.socket | WakeSocket) -> None:
    for sock in sockets:
        sock.close()


def _settle(
    future: asyncio.Future[Any] | None, result: Any, exc: BaseException | None
) -> None:
    if future is None:
        if exc is not None:
            logger.warning("SQLite layer operation failed: %s", exc)
        return
    # If the caller's loop has closed, nobody is waiting.
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(_set, future, result, exc)


def _set(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
