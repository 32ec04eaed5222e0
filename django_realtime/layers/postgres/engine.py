"""The thread that does a PostgreSQL layer's or store's I/O, on a loop of its own.

One thread per layer (or store) per process runs an asyncio loop with two
psycopg connections, made with the settings of a ``DATABASES`` alias: a
writer, which runs the callers' operations one at a time, each in a
transaction, and a listener, which ``LISTEN``\\ s and hands notifications to
a hook. Any thread's loop hands operations over, so the process keeps two
connections however many loops use it.

Rules the callers rely on:

- An operation reported done has committed; one that raised
  :exc:`~django_realtime.exceptions.ChannelLayerError` has not. If the
  writer's connection is lost before ``COMMIT``, the operation is run again
  on a new connection (nothing of it was kept); if it is lost during
  ``COMMIT``, the engine asks the database (``txid_status``) whether the
  transaction committed once it has reconnected. Only when the database
  stays out of reach for ``timeout`` seconds does the operation raise.
- The listener reconnects with backoff after losing its connection,
  ``LISTEN``\\ s again, then calls ``on_listen``, so that the owner looks at
  its tables: notifications sent while it was away are lost, the rows are
  not.
- ``look`` runs, on the writer, when asked (:meth:`Engine.want`) and every
  ``poll_interval`` seconds; ``sweep`` every ``sweep_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg import sql

from django_realtime.exceptions import ChannelLayerError
from django_realtime.layers.postgres._params import connection_kwargs, describe
from django_realtime.layers.postgres._wire import (
    first_line,
    hint,
    wait_for_notifications,
)

__all__ = ["Connection", "Engine", "Work"]

logger = logging.getLogger("django_realtime.layers.postgres")

Connection = psycopg.AsyncConnection[Any]
# Engines copied into a forked child: never used, never closed.
_ABANDONED: list[Engine] = []

#: Run in a transaction on the writer connection at ``now`` (seconds since
#: the epoch); return the result.
Work = Callable[[Connection, float], Awaitable[Any]]

_FIRST_DELAY = 0.05

# Errors after which a transaction is rolled back and may simply run again.
_RETRY = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_MAX_DELAY = 2.0


async def _nothing(connection: Connection, now: float) -> None:
    return None


class _Call:
    __slots__ = ("future", "work")

    def __init__(self, work: Work, future: asyncio.Future[Any] | None) -> None:
        self.work = work
        self.future = future


class Engine:
    """Run operations on a PostgreSQL database, in a thread of its own.

    Args:
        alias: The ``DATABASES`` key whose settings to connect with.
        channels: The notification channels to ``LISTEN`` to.
        on_notify: Called on the engine's loop with each notification's
            channel and payload; it must return at once.
        on_listen: Called on the engine's loop each time the listener has
            (re)connected and listens.
        look: Run on the writer when asked and every ``poll_interval``;
            it runs its own operations with :meth:`run`.
        sweep: Run in a transaction every ``sweep_interval`` seconds.
        clock: Return the time in seconds since the epoch; ``None`` for the
            database's clock, which every process shares.
        timeout: Seconds an operation may wait for the database to come
            back before it fails.
        poll_interval: Seconds between two looks when nothing asked.
        sweep_interval: Seconds between two sweeps.
        name: The thread's name.
        application_name: How the connections are named in
            ``pg_stat_activity``, unless ``OPTIONS`` names them.
        session: Statements run on each new writer connection (``SET ...``).
    """

    def __init__(
        self,
        *,
        alias: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_listen: Callable[[], None],
        look: Callable[[Engine], Awaitable[None]],
        sweep: Work = _nothing,
        timeout: float = 5.0,
        poll_interval: float = 5.0,
        sweep_interval: float = 10.0,
        clock: Callable[[], float] | None = None,
        name: str = "postgres",
        application_name: str = "django_realtime",
        session: Sequence[str] = (),
    ) -> None:
        self.application_name = application_name
        self.session = tuple(session)
        self.clock = clock
        self.alias = alias
        self.channels = list(channels)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.name = name
        self._on_notify = on_notify
        self._on_listen = on_listen
        self._look = look
        self._sweep = sweep
        self._calls: deque[_Call] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wanted = False
        # Made on the engine's loop.
        self._signal: asyncio.Event | None = None
        self._writer: Connection | None = None
        #: Whether the listener is connected and listening (engine thread).
        self.listening = False
        #: monotonic() when the listener last (re)connected.
        self.listening_since = 0.0

    # From any thread

    def submit(self, work: Work) -> asyncio.Future[Any]:
        """Queue ``work``; return a future of its result on the running loop.

        Raises ChannelLayerError if the engine has been stopped.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._push(_Call(work, future))
        return future

    def post(self, work: Work) -> None:
        """Queue ``work`` with nobody waiting for its result."""
        self._push(_Call(work, None))

    def want(self) -> None:
        """Ask for a look soon; start the thread (and the listener) if needed."""
        if self._wanted and self._thread is not None:
            return
        self._wanted = True
        with self._lock:
            if self._stopping:
                return
            self._start()
        self._wake()

    def stop(self) -> None:
        """Finish the queued operations, close the connections and end."""
        with self._lock:
            self._stopping = True
            if self._thread is None:
                return
        self._wake()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; return whether it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def abandon(self) -> None:
        """In a forked child: keep the copy unused (closing it ends the parent's)."""
        _ABANDONED.append(self)

    # On the engine's loop (hooks)

    async def run(self, work: Work) -> Any:
        """Run ``work`` in a transaction now; for the hooks, on the engine's loop."""
        writer = await self._connection()
        return await self._transaction(writer, work)

    # Internals: callers' side

    def _push(self, call: _Call) -> None:
        with self._lock:
            if self._stopping:
                raise ChannelLayerError(
                    f"The PostgreSQL {self.name} engine has been closed."
                )
            self._calls.append(call)
            self._start()
        self._wake()

    def _start(self) -> None:
        # Under self._lock.
        if self._thread is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._main,
                args=(self._loop,),
                name=f"{self.name}-{self.alias}",
                daemon=True,
            )
            self._thread.start()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # The loop has closed.
            loop.call_soon_threadsafe(self._set_signal)

    def _set_signal(self) -> None:
        if self._signal is not None:
            self._signal.set()

    # Internals: the thread

    def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._signal = asyncio.Event()
        listener = asyncio.create_task(self._listen())
        next_look = next_sweep = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                wait = max(0.0, min(next_look, next_sweep) - now)
                if not (self._calls or self._wanted or self._stopping):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._signal.wait(), wait)
                self._signal.clear()
                # Those queued now: a steady stream of calls must not keep
                # receivers from their looks.
                for _ in range(len(self._calls)):
                    await self._call(self._calls.popleft())
                if self._stopping:
                    break
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + self.sweep_interval
                    await self._quietly(self._sweep)
                if self._wanted or now >= next_look:
                    self._wanted = False
                    next_look = now + self.poll_interval
                    try:
                        await self._look(self)
                    except (ChannelLayerError, ImproperlyConfigured) as error:
                        logger.warning("%s: %s", self.name, error)
                    except Exception:
                        logger.exception("PostgreSQL %s failed a look.", self.name)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._close_writer()
            with self._lock:
                calls, self._calls = list(self._calls), deque()
            for call in calls:
                _settle(call.future, None, ChannelLayerError("The layer has closed."))

    async def _quietly(self, work: Work) -> None:
        try:
            await self.run(work)
        except (ChannelLayerError, ImproperlyConfigured) as error:
            logger.warning("%s: %s", self.name, error)
        except Exception:
            logger.exception("PostgreSQL %s failed a sweep.", self.name)

    async def _call(self, call: _Call) -> None:
        try:
            result = await self.run(call.work)
        except Exception as error:
            _settle(call.future, None, error)
        else:
            _settle(call.future, result, None)

    async def _connection(self) -> Connection:
        """Return the writer connection, connecting within ``timeout``."""
        if self._writer is not None and not self._writer.closed:
            return self._writer
        writer = await self._connect(time.monotonic() + self.timeout)
        for statement in self.session:
            await writer.execute(statement)
        self._writer = writer
        return writer

    async def _connect(self, deadline: float) -> Connection:
        delay = _FIRST_DELAY
        while True:
            try:
                kwargs = connection_kwargs(self.alias)
                kwargs.setdefault("application_name", self.application_name)
                left = max(1, int(deadline - time.monotonic() + 0.999))
                kwargs["connect_timeout"] = min(int(kwargs["connect_timeout"]), left)
                return await psycopg.AsyncConnection.connect(autocommit=True, **kwargs)
            except psycopg.Error as error:
                if time.monotonic() + delay >= deadline:
                    raise ChannelLayerError(
                        f"Could not connect to PostgreSQL at {describe(self.alias)} "
                        f"within {self.timeout}s: {first_line(error)}."
                    ) from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    async def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.close()

    async def _transaction(self, writer: Connection, work: Work) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            committing = False
            xid = 0
            try:
                # One round trip: the simple query protocol runs both.
                cursor = await writer.execute(
                    "BEGIN; SELECT txid_current(), "
                    "extract(epoch from clock_timestamp())",
                    prepare=False,
                )
                cursor.nextset()
                row = await cursor.fetchone()
                if row is None:  # pragma: no cover (one row, always)
                    raise ChannelLayerError("txid_current() returned no row.")
                xid = int(row[0])
                now = self.clock() if self.clock is not None else float(row[1])
                result = await work(writer, now)
                committing = True
                await writer.execute("COMMIT")
                return result
            except psycopg.Error as error:
                if not (writer.closed or writer.broken):
                    with contextlib.suppress(psycopg.Error):
                        await writer.execute("ROLLBACK")
                    if isinstance(error, _RETRY) and time.monotonic() < deadline:
                        # Another process's transaction won: nothing was
                        # kept, so running it again is safe.
                        continue
                    raise ChannelLayerError(
                        f"PostgreSQL at {describe(self.alias)} refused the "
                        f"operation: {first_line(error)}. Nothing of it was "
                        "kept." + hint(error)
                    ) from error
                logger.warning(
                    "Lost the connection to PostgreSQL at %s (%s); reconnecting.",
                    describe(self.alias),
                    first_line(error),
                )
                await self._close_writer()
                if time.monotonic() >= deadline:
                    raise self._unreachable(error, committing) from error
                try:
                    writer = await self._connection()
                except ChannelLayerError as lost:
                    raise self._unreachable(lost, committing) from error
                if committing and await self._committed(writer, xid, deadline):
                    return result
                # Nothing of the transaction was kept: run it again.
            except BaseException:
                if not (writer.closed or writer.broken):
                    with contextlib.suppress(psycopg.Error):
                        await writer.execute("ROLLBACK")
                raise

    async def _committed(self, writer: Connection, xid: int, deadline: float) -> bool:
        """Return whether transaction ``xid``, whose COMMIT was cut off, committed.

        Its session may still be finishing it (the network failed, not the
        server): wait for the outcome until ``deadline``.
        """
        while True:
            cursor = await writer.execute("SELECT txid_status(%s)", (xid,))
            row = await cursor.fetchone()
            status = row[0] if row else None
            if status != "in progress":
                return status == "committed"
            if time.monotonic() >= deadline:
                raise ChannelLayerError(
                    f"Lost the connection to PostgreSQL at {describe(self.alias)} "
                    "while committing; the transaction was still in progress "
                    f"after {self.timeout}s, so whether the operation was kept "
                    "is unknown."
                )
            await asyncio.sleep(_FIRST_DELAY)

    def _unreachable(self, error: BaseException, committing: bool) -> ChannelLayerError:
        where = describe(self.alias)
        if committing:
            return ChannelLayerError(
                f"Lost the connection to PostgreSQL at {where} while committing, "
                f"and could not reconnect within {self.timeout}s to learn "
                f"whether the operation was kept: {first_line(error)}."
            )
        return ChannelLayerError(
            f"Could not reach PostgreSQL at {where} within {self.timeout}s: "
            f"{first_line(error)}. Nothing of the operation was kept."
        )

    async def _listen(self) -> None:
        delay = _FIRST_DELAY
        lost_at: float | None = None
        while True:
            try:
                connection = await self._connect(time.monotonic() + self.timeout)
            except Exception as error:  # ImproperlyConfigured too: keep trying.
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.warning("%s Retrying.", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            try:
                connection.add_notify_handler(self._notified)
                for channel in self.channels:
                    await connection.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                    )
                if lost_at is not None:
                    logger.warning(
                        "Listening to PostgreSQL at %s again after %.1fs.",
                        describe(self.alias),
                        time.monotonic() - lost_at,
                    )
                    lost_at = None
                delay = _FIRST_DELAY
                self.listening = True
                self.listening_since = time.monotonic()
                self._on_listen()
                self.want()
                await wait_for_notifications(
                    connection, self.poll_interval, self._on_notify
                )
            except psycopg.Error as error:
                lost_at = time.monotonic()
                logger.warning(
                    "Lost the listening connection to PostgreSQL at %s (%s); "
                    "reconnecting.",
                    describe(self.alias),
                    first_line(error),
                )
            finally:
                self.listening = False
                with contextlib.suppress(Exception):
                    await connection.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def _notified(self, notify: psycopg.Notify) -> None:
        self._on_notify(notify.channel, notify.payload)


def _settle(
    future: asyncio.Future[Any] | None, result: Any, exc: BaseException | None
) -> None:
    if future is None:
        if exc is not None:
            logger.warning("PostgreSQL layer operation failed: %s", exc)
        return
    with contextlib.suppress(RuntimeError):  # The caller's loop has closed.
        future.get_loop().call_soon_threadsafe(_set, future, result, exc)


def _set(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
