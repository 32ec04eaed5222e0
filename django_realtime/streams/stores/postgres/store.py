"""The PostgreSQL history store: streams kept in PostgreSQL tables.

Two tables, created by the app's migrations (see
:mod:`django_realtime.layers.postgres.schema`): ``drt_pg_stream`` (each
stream's epoch, newest offset, and the count and bytes it keeps) and
``drt_pg_stream_entry`` (the kept publications).

Publishing is one transaction: it gives the payload the stream's next
offset, keeps it, trims the stream to its policy (by count, bytes and age)
and notifies ``drt_stream`` with the stream's name and the offset;
PostgreSQL delivers the notification when the transaction commits, so
:meth:`PostgresHistoryStore.publish_in_transaction` can publish in the
caller's own transaction. Every process that listens to some stream
``LISTEN``\\ s; on a notification for a stream it listens to, it reads what
came after the last offset it announced and announces it, in order. After
its listening connection was lost it reads every stream it listens to
again, so nothing committed meanwhile is missed.

Semantics:

- **History is the source of truth.** A publication trimmed away before a
  listening process read it is not announced; its listeners notice the gap
  in offsets and read the history.
- **Restarts keep positions.** Streams keep their epoch and offset in the
  database. :meth:`PostgresHistoryStore.flush` starts every stream in a new
  epoch.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from django_realtime.layers._slot import EngineSlot
from django_realtime.layers.postgres.engine import Connection, Engine
from django_realtime.streams.positions import History, Position, Publication
from django_realtime.streams.stores.base import (
    HistoryStore,
    Listener,
    PolicyTable,
    StreamHub,
)
from django_realtime.streams.stores.postgres import _tables

__all__ = ["PostgresHistoryStore"]

# Seconds between two trims of streams nobody publishes to or reads.
_SWEEP_INTERVAL = 60.0


def _database_of(alias: str) -> tuple[str, str, str] | None:
    settings_dict = connections.settings.get(alias) if alias else None
    if not settings_dict or "postgresql" not in str(settings_dict.get("ENGINE")):
        return None
    return (
        str(settings_dict.get("HOST") or ""),
        str(settings_dict.get("PORT") or ""),
        str(settings_dict.get("NAME") or ""),
    )


class PostgresHistoryStore(HistoryStore):
    """Keep streams in PostgreSQL; announce publications through NOTIFY.

    Configure it in ``REALTIME``::

        REALTIME = {
            "STREAM_STORE": {
                "BACKEND": "django_realtime.streams.stores.postgres."
                "PostgresHistoryStore",
                "OPTIONS": {"alias": "default"},
            },
        }

    Publish, read and listen from any event loop and thread: the store's
    I/O runs in one thread of its own, with two connections (one writes,
    one listens), started on first use and ended by :meth:`close`.

    Args:
        alias: The ``DATABASES`` key of the PostgreSQL database.
        policies: Each stream's history policy.
        clock: Return wall-clock seconds; publication ages follow it.
        timeout: Seconds an operation waits for the database to come back
            before it fails with :exc:`~django_realtime.exceptions.
            ChannelLayerError` (nothing of it was kept).
        poll_interval: Seconds between two looks when nothing notified.
    """

    def __init__(
        self,
        alias: str = DEFAULT_DB_ALIAS,
        *,
        policies: PolicyTable | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        poll_interval: float = 5.0,
    ) -> None:
        super().__init__(policies, clock)
        if not isinstance(alias, str) or not alias:
            raise TypeError(f"alias must be a key of DATABASES, got {alias!r}.")
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Expected {name} in seconds, got {value!r}.")
            if value <= 0:
                raise ValueError(f"Expected {name} > 0, got {value!r}.")
        self.alias = alias
        self.timeout = timeout
        self.poll_interval = poll_interval
        # Guards the hub: listeners are added on event loops, announced to
        # from the engine's thread.
        self._hub_lock = threading.Lock()
        # Engine thread only: stream -> (epoch, newest offset announced),
        # and the streams to look at.
        self._seen: dict[str, tuple[str, int]] = {}
        self._dirty: set[str] = set()
        self._slot: EngineSlot[Engine] = EngineSlot(self._make_engine, self._forked)

    def __repr__(self) -> str:
        return f"<PostgresHistoryStore DATABASES[{self.alias!r}]>"

    async def publish(self, stream: str, data: str) -> Publication:
        """Keep ``data`` at ``stream``'s next position and announce it.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``.
            ChannelLayerError: the database stayed out of reach for
                ``timeout`` seconds; nothing was published.
        """
        policy = self.policies(stream)
        size = policy.check_size(stream, data)

        async def work(connection: Connection, now: float) -> Publication:
            cursor = await connection.execute(
                _tables.PUBLISH, _tables.publish_params(stream, data, size, now)
            )
            row = await cursor.fetchone()
            if row is None:  # pragma: no cover (the upsert returns a row)
                raise RuntimeError(f"Publishing to {stream!r} returned no row.")
            epoch, offset, count, total, oldest, _ = row
            if _tables.must_trim(policy, count, total, oldest, now):
                await connection.execute(
                    _tables.TRIM, _tables.trim_params(stream, policy, now)
                )
            return Publication(stream, epoch, offset, data)

        publication: Publication = await self._slot.get().submit(work)
        return publication

    def writes_in(self, using: str) -> bool:
        """Return whether Django's ``using`` is this store's database."""
        mine = _database_of(self.alias)
        return mine is not None and _database_of(using) == mine

    def publish_in_transaction(
        self, stream: str, data: str, using: str = DEFAULT_DB_ALIAS
    ) -> Publication:
        """Publish ``data`` in the current transaction of Django's ``using``.

        ``using`` must be this store's database. The publication is written
        by the caller's transaction (a savepoint of it inside
        ``transaction.atomic()``, or a transaction of its own): kept if it
        commits, gone if it rolls back. Its notification is sent by
        PostgreSQL when the transaction commits, and a listening process
        that missed it (its connection was down) reads the stream when it
        listens again, so a committed publication is announced once to
        every listening process.

        Raises:
            ValueError: the payload alone is over the stream's
                ``max_bytes``, or ``using`` is not this store's database.
        """
        policy = self.policies(stream)
        size = policy.check_size(stream, data)
        if not self.writes_in(using):
            raise ValueError(
                f"Expected DATABASES[{using!r}] to be this store's PostgreSQL "
                f"database, DATABASES[{self.alias!r}]; got "
                f"{connections.settings.get(using, {}).get('ENGINE')!r} "
                f"database {connections.settings.get(using, {}).get('NAME')!r}."
            )
        now = self.clock()
        connection = connections[using]
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(
                _tables.PUBLISH, _tables.publish_params(stream, data, size, now)
            )
            epoch, offset, count, total, oldest, _ = cursor.fetchone()
            if _tables.must_trim(policy, count, total, oldest, now):
                cursor.execute(_tables.TRIM, _tables.trim_params(stream, policy, now))
        return Publication(stream, epoch, offset, data)

    async def read(self, stream: str, since: Position | None = None) -> History:
        """Return what ``stream`` published after ``since``."""
        policy = self.policies(stream)

        async def work(connection: Connection, now: float) -> History:
            await connection.execute(_tables.CREATE, (stream, _tables.new_epoch()))
            row = await _stream_row(connection, stream)
            if _tables.must_trim(policy, row[2], row[3], row[4], now):
                await connection.execute(
                    _tables.TRIM, _tables.trim_params(stream, policy, now)
                )
                row = await _stream_row(connection, stream)
            answer, offset = _tables.history(stream, since, row, int(row[2]))
            if answer is not None or since is None:
                return answer or History(stream, str(row[0]), offset)
            cursor = await connection.execute(
                _tables.ENTRIES, (stream, row[0], since.offset, offset, None)
            )
            publications = _tables.after(stream, row[0], await cursor.fetchall())
            if publications and publications[0].offset != since.offset + 1:
                # Trimmed by a publication that committed meanwhile.
                return History(stream, row[0], offset, reason="outside_window")
            return History(stream, row[0], offset, publications)

        history: History = await self._slot.get().submit(work)
        return history

    async def listen(self, stream: str, listener: Listener) -> None:
        """Announce ``stream``'s new publications to ``listener``."""
        engine = self._slot.get()
        with self._hub_lock:
            self.hub.add(stream, listener)

        async def work(connection: Connection, now: float) -> None:
            if stream in self._seen:
                return
            await connection.execute(_tables.CREATE, (stream, _tables.new_epoch()))
            row = await _stream_row(connection, stream)
            self._seen[stream] = (str(row[0]), int(row[1]))

        await engine.submit(work)
        engine.want()

    async def unlisten(self, stream: str, listener: Listener) -> None:
        """Stop announcing ``stream`` to ``listener``."""
        with self._hub_lock:
            if self.hub.remove(stream, listener):
                self._seen.pop(stream, None)

    async def flush(self) -> None:
        """Forget every stream's history: each starts a new epoch."""

        async def work(connection: Connection, now: float) -> None:
            await connection.execute("DELETE FROM drt_pg_stream_entry")
            await connection.execute("DELETE FROM drt_pg_stream")
            self._seen.clear()

        await self._slot.get().submit(work)
        with self._hub_lock:
            self.hub.resync()

    async def close(self) -> None:
        """End the store's thread and close its connections."""
        if await self._slot.close(self.timeout + 5) is not None:
            self._seen.clear()
            self._dirty.clear()

    # Internals

    def _make_engine(self) -> Engine:
        return Engine(
            alias=self.alias,
            channels=[_tables.NOTIFY_CHANNEL],
            on_notify=self._notified,
            on_listen=self._relisten,
            look=self._announce,
            sweep=self._sweep,
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            sweep_interval=_SWEEP_INTERVAL,
            clock=self.clock,
            name="postgres-streams",
            application_name=f"drt-streams-{os.getpid()}-{id(self):x}",
        )

    def _forked(self) -> None:
        """Start afresh in a process forked from the one that used the store."""
        self._hub_lock = threading.Lock()
        self.hub = StreamHub()
        self._seen = {}
        self._dirty = set()

    # On the engine's loop

    def _notified(self, channel: str, payload: str) -> None:
        parsed = _tables.parse_notification(payload)
        if parsed is None:
            return
        offset, epoch, stream = parsed
        seen = self._seen.get(stream)
        if seen is None or seen == (epoch, offset) or stream not in self.hub:
            return
        self._dirty.add(stream)
        engine = self._slot.current
        if engine is not None:
            engine.want()

    def _relisten(self) -> None:
        # Notifications sent while the listener was away are lost.
        self._dirty.update(self._seen)

    async def _announce(self, engine: Engine) -> None:
        """Announce what the streams marked dirty published since last seen."""
        while self._dirty:
            stream = self._dirty.pop()
            if stream not in self.hub:
                self._seen.pop(stream, None)
                continue
            await engine.run(functools.partial(self._catch_up, stream=stream))

    async def _catch_up(self, connection: Connection, now: float, stream: str) -> None:
        seen = self._seen.get(stream)
        if seen is None:
            return
        row = await _stream_row(connection, stream, create=False)
        if row is None or str(row[0]) != seen[0]:
            # Flushed: the stream starts a new epoch.
            self._seen[stream] = (str(row[0]), int(row[1])) if row else ("", 0)
            with self._hub_lock:
                self.hub.resync([stream])
            return
        epoch, newest = str(row[0]), int(row[1])
        cursor = await connection.execute(
            _tables.ENTRIES, (stream, epoch, seen[1], newest, _tables.BATCH)
        )
        publications = _tables.after(stream, epoch, await cursor.fetchall())
        with self._hub_lock:
            for publication in publications:
                self.hub.announce(publication)
        last = publications[-1].offset if publications else newest
        self._seen[stream] = (epoch, last)
        if last < newest:
            self._dirty.add(stream)  # More than a batch: the next turn.

    async def _sweep(self, connection: Connection, now: float) -> None:
        """Trim, by age, streams whose oldest publication is over a minute old."""
        cursor = await connection.execute(
            "SELECT DISTINCT stream FROM drt_pg_stream_entry "
            "WHERE published_at < %s LIMIT %s",
            (now - _SWEEP_INTERVAL, _tables.BATCH),
        )
        for (stream,) in await cursor.fetchall():
            policy = self.policies(stream)
            if policy.max_age is not None:
                await connection.execute(
                    _tables.TRIM, _tables.trim_params(stream, policy, now)
                )


async def _stream_row(
    connection: Connection, stream: str, *, create: bool = True
) -> Any:
    cursor = await connection.execute(_tables.STREAM, {"stream": stream})
    row = await cursor.fetchone()
    if row is None and create:  # pragma: no cover (created just before)
        raise RuntimeError(f"Stream {stream!r} has no row.")
    return row
