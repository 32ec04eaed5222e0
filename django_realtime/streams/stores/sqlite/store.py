"""The SQLite history store: streams kept in a file, shared by the processes
of one machine, and kept across restarts.

Two tables in the file (by default the SQLite channel layer's file):

- ``drt_stream``: one row per stream: its ``epoch``, newest ``offset``, and
  the ``count`` and ``bytes`` of the publications it keeps;
- ``drt_stream_entry``: the kept publications, numbered by a ``seq`` that
  grows across all streams and is never reused.

Publishing is one transaction: it gives the payload the stream's next
offset, keeps it and trims the stream to its policy (by count, bytes and
age). Reading is another, which starts the stream (a new epoch, offset 0)
if it has never been used. Every process that listens to some stream binds
a wake-up socket beside the file (``<path>.streams.wake/``); a publisher
pokes them all once its transaction has committed, and each reads what was
published after the last ``seq`` it announced, in ``seq`` order, and
announces what its listeners listen to. It also looks every
``poll_interval`` seconds, in case a poke was lost.

Semantics:

- **History is the source of truth.** A publication trimmed away before a
  listening process read it is not announced; its listeners notice the gap
  in offsets and read the history.
- **Restarts keep positions.** A stream keeps its epoch and offset in the
  file, so clients coming back after a server restart resume where they
  were. :meth:`SQLiteHistoryStore.flush` starts every stream in a new epoch.
"""

from __future__ import annotations

import functools
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from django_realtime.layers._slot import EngineSlot
from django_realtime.layers.sqlite.engine import ANY_PROCESS, Engine
from django_realtime.layers.sqlite.layer import DEFAULT_PATH
from django_realtime.layers.sqlite.wake import DEAD, WakeSocket, wake_dir
from django_realtime.streams.positions import (
    History,
    Position,
    Publication,
)
from django_realtime.streams.stores.base import (
    HistoryStore,
    Listener,
    PolicyTable,
    StreamHub,
)
from django_realtime.streams.stores.sqlite import _tables

__all__ = ["SQLiteHistoryStore"]

_PROCESS_ID_LENGTH = 12
# Seconds between two trims of streams nobody publishes to or reads.
_SWEEP_INTERVAL = 60.0


class SQLiteHistoryStore(HistoryStore):
    """Keep streams in a SQLite file; announce publications to its processes.

    Configure it in ``REALTIME``::

        REALTIME = {
            "STREAM_STORE": {
                "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
                "OPTIONS": {"path": BASE_DIR / "realtime.sqlite3"},
            },
        }

    Publish, read and listen from any event loop and thread: the store's
    I/O runs in one thread of its own, started on first use and ended by
    :meth:`close`.

    Args:
        path: The database file; the SQLite channel layer's file may be
            shared. Its directory must exist.
        policies: Each stream's history policy.
        clock: Return wall-clock seconds; publication ages follow it.
        timeout: Seconds an operation waits for another process's lock on
            the file before it fails with :exc:`~django_realtime.exceptions.
            ChannelLayerError`.
        poll_interval: Seconds between two looks for publications of other
            processes when no poke came.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        policies: PolicyTable | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(policies, clock)
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise TypeError(f"path must be a file path, got {path!r}.")
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Expected {name} in seconds, got {value!r}.")
            if value <= 0:
                raise ValueError(f"Expected {name} > 0, got {value!r}.")
        self.path = Path(os.path.abspath(path))
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.process_id = secrets.token_hex(_PROCESS_ID_LENGTH // 2)
        self._wake_dir = wake_dir(self.path, _PROCESS_ID_LENGTH, ".streams.wake")
        # Guards the hub: listeners are added on event loops, announced to
        # from the engine's thread.
        self._hub_lock = threading.Lock()
        # The newest seq announced; only the engine's thread uses it.
        self._cursor: int | None = None
        self._slot: EngineSlot[Engine] = EngineSlot(self._make_engine, self._forked)

    def __repr__(self) -> str:
        return f"<SQLiteHistoryStore {self.path}>"

    async def publish(self, stream: str, data: str) -> Publication:
        """Keep ``data`` at ``stream``'s next position and announce it.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``.
            ChannelLayerError: the file stayed locked for ``timeout`` seconds;
                nothing was published.
        """
        policy = self.policies(stream)
        size = policy.check_size(stream, data)

        def operation(
            connection: sqlite3.Connection, now: float
        ) -> tuple[Publication, set[str]]:
            publication = _tables.publish(connection, stream, data, size, policy, now)
            return publication, {ANY_PROCESS}

        publication: Publication = await self._slot.get().submit(operation)
        return publication

    def writes_in(self, using: str) -> bool:
        """Return whether Django's ``using`` database is this store's file."""
        connection = connections[using]
        name = str(connection.settings_dict.get("NAME", ""))
        return connection.vendor == "sqlite" and _tables.same_file(name, self.path)

    def publish_in_transaction(
        self, stream: str, data: str, using: str = DEFAULT_DB_ALIAS
    ) -> Publication:
        """Publish ``data`` in the current transaction of Django's ``using``.

        The store's file must be the file of that SQLite database. The
        publication is written by the caller's transaction (a savepoint of
        it inside ``transaction.atomic()``, or a transaction of its own):
        kept if it commits, gone if it rolls back. Once it commits, the
        listening processes are poked; a process that misses the poke (the
        publisher died right after its commit) finds the publication at its
        next look, so a committed publication is announced once to every
        listening process.

        Give the database ``"OPTIONS": {"transaction_mode": "IMMEDIATE"}``,
        so that its transactions wait for the store's writes, and the
        store's for them, instead of failing with "database is locked".

        Raises:
            ValueError: the payload alone is over the stream's
                ``max_bytes``, or ``using`` is not a SQLite database in the
                store's file.
        """
        policy = self.policies(stream)
        size = policy.check_size(stream, data)
        connection = connections[using]
        if not self.writes_in(using):
            name = connection.settings_dict.get("NAME", "")
            raise ValueError(
                f"Expected DATABASES[{using!r}] to be the SQLite file of this "
                f"store, {self.path}; got {connection.vendor} database {name!r}."
            )
        connection.ensure_connection()
        with transaction.atomic(using=using):
            raw = connection.connection
            _tables.create_tables(raw)
            publication = _tables.publish(raw, stream, data, size, policy, self.clock())
        transaction.on_commit(self._committed, using=using)
        return publication

    def _committed(self) -> None:
        """Poke the listening processes now: a publication has committed.

        Poked from the committing thread, not the store's: the process may
        end right after its commit.
        """
        engine = self._slot.get()
        wake = engine.wake
        for process in wake.processes():
            if wake.poke(process) == DEAD:
                wake.forget(process)
        if wake.bound:
            engine.want()

    async def read(self, stream: str, since: Position | None = None) -> History:
        """Return what ``stream`` published after ``since``."""
        policy = self.policies(stream)

        def operation(
            connection: sqlite3.Connection, now: float
        ) -> tuple[History, set[str]]:
            return _tables.read(connection, stream, since, policy, now), set()

        history: History = await self._slot.get().submit(operation)
        return history

    async def listen(self, stream: str, listener: Listener) -> None:
        """Announce ``stream``'s new publications to ``listener``."""
        engine = self._slot.get()
        engine.wake.bind()
        with self._hub_lock:
            self.hub.add(stream, listener)
        if self._cursor is None:

            def operation(
                connection: sqlite3.Connection, now: float
            ) -> tuple[None, set[str]]:
                if self._cursor is None:
                    row = connection.execute(
                        "SELECT COALESCE(MAX(seq), 0) FROM drt_stream_entry"
                    ).fetchone()
                    self._cursor = int(row[0])
                return None, set()

            await engine.submit(operation)

    async def unlisten(self, stream: str, listener: Listener) -> None:
        """Stop announcing ``stream`` to ``listener``."""
        with self._hub_lock:
            self.hub.remove(stream, listener)

    async def flush(self) -> None:
        """Forget every stream's history: each starts a new epoch."""

        def operation(
            connection: sqlite3.Connection, now: float
        ) -> tuple[None, set[str]]:
            connection.execute("DELETE FROM drt_stream_entry")
            connection.execute("DELETE FROM drt_stream")
            return None, set()

        await self._slot.get().submit(operation)
        with self._hub_lock:
            self.hub.resync()

    async def close(self) -> None:
        """End the store's thread, close its file and remove its socket."""
        if await self._slot.close(self.timeout + 5):
            self._cursor = None

    # Internals

    def _make_engine(self) -> Engine:
        return Engine(
            path=self.path,
            wake=WakeSocket(self._wake_dir, self.process_id),
            clock=self.clock,
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            sweep_interval=_SWEEP_INTERVAL,
            schema=_tables.create_tables,
            look=self._announce,
            sweep=self._sweep,
            name="sqlite-streams",
        )

    def _forked(self) -> None:
        """Start afresh in a process forked from the one that used the store.

        The engine's thread and the listeners stayed in the parent.
        """
        # A lock held by another thread at the fork stays held in the child.
        self._hub_lock = threading.Lock()
        self.process_id = secrets.token_hex(_PROCESS_ID_LENGTH // 2)
        self.hub = StreamHub()
        self._cursor = None

    def _sweep(self, connection: sqlite3.Connection, now: float) -> None:
        """Trim, by age, streams whose oldest publication is over a minute old.

        Publishing and reading trim a stream; this trims those that nobody
        publishes to or reads any more, so that their history does not stay
        in the file for ever.
        """
        streams = connection.execute(
            "SELECT DISTINCT stream FROM drt_stream_entry WHERE published_at < ? "
            "LIMIT ?",
            (now - _SWEEP_INTERVAL, _tables.BATCH),
        ).fetchall()
        for (stream,) in streams:
            policy = self.policies(stream)
            if policy.max_age is None:
                continue
            row = connection.execute(
                "SELECT count, bytes FROM drt_stream WHERE name = ?", (stream,)
            ).fetchone()
            if row is None:
                continue
            kept = _tables.trim(connection, stream, policy, now, row[0], row[1])
            if kept != (row[0], row[1]):
                connection.execute(
                    "UPDATE drt_stream SET count = ?, bytes = ? WHERE name = ?",
                    (*kept, stream),
                )

    def _announce(self, engine: Engine) -> None:
        """Announce what was published since the last look (engine thread)."""
        while self._cursor is not None:
            rows = engine.transaction(
                functools.partial(_tables.since, cursor=self._cursor)
            )
            if not rows:
                return
            self._cursor = rows[-1][0]
            with self._hub_lock:
                for _, stream, epoch, offset, data in rows:
                    if stream in self.hub:
                        self.hub.announce(Publication(stream, epoch, offset, data))
            if len(rows) < _tables.BATCH:
                return
