"""Presence kept in the SQLite store's file, shared by the processes of one machine.

Six tables beside the store's (created on first use):

- ``drt_presence_conn``: one row per connection: its stream, member key and
  process (its owner, :class:`~.model.Roster`);
- ``drt_presence_member``: one row per member: its info, number of
  connections and the version of its last change;
- ``drt_presence_version``: each stream's version counter;
- ``drt_presence_process``: each process's last heartbeat (the machine's
  clock, shared by all its processes), and ``drt_presence_process_stream``
  the streams where it tracked connections;
- ``drt_presence_unpublished``: each member's newest change not yet known
  to be published (a sweep publishes those of the streams of a dead
  process).

Each step is one ``BEGIN IMMEDIATE`` transaction, so processes never
interleave inside a change, and a sweep removes a dead process's
connections from every stream at once. Steps run on a thread of their own,
one at a time per process: a lock held by another process makes them wait
(``timeout`` seconds at most), not the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django_realtime.presence.backends import PresenceBackend, Snapshot
from django_realtime.presence.model import Change, Record

__all__ = ["SQLitePresence"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drt_presence_conn (
    stream TEXT NOT NULL, conn TEXT NOT NULL, key TEXT NOT NULL,
    process TEXT NOT NULL, PRIMARY KEY (stream, conn));
CREATE INDEX IF NOT EXISTS drt_presence_conn_process
    ON drt_presence_conn (process, stream);
CREATE TABLE IF NOT EXISTS drt_presence_member (
    stream TEXT NOT NULL, key TEXT NOT NULL, info TEXT NOT NULL,
    connections INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (stream, key));
CREATE TABLE IF NOT EXISTS drt_presence_version (
    stream TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drt_presence_process (
    process TEXT PRIMARY KEY, beat REAL NOT NULL);
CREATE TABLE IF NOT EXISTS drt_presence_process_stream (
    process TEXT NOT NULL, stream TEXT NOT NULL, PRIMARY KEY (process, stream));
CREATE TABLE IF NOT EXISTS drt_presence_unpublished (
    stream TEXT NOT NULL, key TEXT NOT NULL, info TEXT NOT NULL,
    connections INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (stream, key));
"""


class SQLitePresence(PresenceBackend):
    """Keep presence in the SQLite file at ``path``."""

    shared = True

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.clock = clock
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    def _in_transaction(self, step: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = step(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

    async def _run(self, step: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.to_thread(self._in_transaction, step)

    # -- the rules of Roster, in SQL ------------------------------------

    @staticmethod
    def _bump(db: sqlite3.Connection, stream: str) -> int:
        row = db.execute(
            "INSERT INTO drt_presence_version (stream, version) VALUES (?, 1) "
            "ON CONFLICT (stream) DO UPDATE SET version = version + 1 "
            "RETURNING version",
            (stream,),
        ).fetchone()
        return int(row[0])

    def _track(
        self,
        db: sqlite3.Connection,
        stream: str,
        conn: str,
        key: str,
        info: str,
        process: str,
        *,
        take: bool = True,
    ) -> Change | None:
        try:
            db.execute(
                "INSERT INTO drt_presence_conn (stream, conn, key, process) "
                "VALUES (?, ?, ?, ?)",
                (stream, conn, key, process),
            )
        except sqlite3.IntegrityError:
            if take:
                # Held by another process, say: this one owns it now.
                db.execute(
                    "UPDATE drt_presence_conn SET process = ? "
                    "WHERE stream = ? AND conn = ?",
                    (process, stream, conn),
                )
                self._holds(db, process, stream)
            return None
        row = db.execute(
            "SELECT connections FROM drt_presence_member WHERE stream = ? AND key = ?",
            (stream, key),
        ).fetchone()
        record = Record(info, (row[0] if row else 0) + 1, self._bump(db, stream))
        db.execute(
            "INSERT OR REPLACE INTO drt_presence_member "
            "(stream, key, info, connections, version) VALUES (?, ?, ?, ?, ?)",
            (stream, key, info, record.connections, record.version),
        )
        self._holds(db, process, stream)
        return self._unpublished(db, stream, Change(key, record))

    @staticmethod
    def _holds(db: sqlite3.Connection, process: str, stream: str) -> None:
        db.execute(
            "INSERT OR IGNORE INTO drt_presence_process_stream (process, stream) "
            "VALUES (?, ?)",
            (process, stream),
        )

    @staticmethod
    def _unpublished(db: sqlite3.Connection, stream: str, change: Change) -> Change:
        record = change.record
        db.execute(
            "INSERT OR REPLACE INTO drt_presence_unpublished "
            "(stream, key, info, connections, version) VALUES (?, ?, ?, ?, ?)",
            (stream, change.key, record.info, record.connections, record.version),
        )
        return change

    def _untrack(
        self,
        db: sqlite3.Connection,
        stream: str,
        conn: str,
        process: str | None = None,
    ) -> Change | None:
        row = db.execute(
            "DELETE FROM drt_presence_conn WHERE stream = ? AND conn = ? "
            "AND (? IS NULL OR process = ?) RETURNING key",
            (stream, conn, process, process),
        ).fetchone()
        if row is None:
            return None
        key = row[0]
        info, count = db.execute(
            "SELECT info, connections FROM drt_presence_member "
            "WHERE stream = ? AND key = ?",
            (stream, key),
        ).fetchone()
        record = Record(info, count - 1, self._bump(db, stream))
        if record.connections:
            db.execute(
                "UPDATE drt_presence_member SET connections = ?, version = ? "
                "WHERE stream = ? AND key = ?",
                (record.connections, record.version, stream, key),
            )
        else:
            db.execute(
                "DELETE FROM drt_presence_member WHERE stream = ? AND key = ?",
                (stream, key),
            )
        return self._unpublished(db, stream, Change(key, record))

    def _sync(
        self,
        db: sqlite3.Connection,
        stream: str,
        process: str,
        connections: dict[str, tuple[str, str]],
    ) -> list[Change]:
        held = [
            row[0]
            for row in db.execute(
                "SELECT conn FROM drt_presence_conn WHERE process = ? AND stream = ?",
                (process, stream),
            )
        ]
        changes = [
            change
            for conn in held
            if conn not in connections
            if (change := self._untrack(db, stream, conn, process)) is not None
        ]
        for conn, (key, info) in connections.items():
            change = self._track(db, stream, conn, key, info, process, take=False)
            if change is not None:
                changes.append(change)
        return changes

    # -- the backend ----------------------------------------------------

    async def track(
        self, stream: str, conn: str, key: str, info: str, process: str
    ) -> list[Change]:
        change = await self._run(
            lambda db: self._track(db, stream, conn, key, info, process)
        )
        return [] if change is None else [change]

    async def untrack(
        self, stream: str, conn: str, process: str | None = None
    ) -> list[Change]:
        change = await self._run(lambda db: self._untrack(db, stream, conn, process))
        return [] if change is None else [change]

    async def sync(
        self, stream: str, process: str, connections: dict[str, tuple[str, str]]
    ) -> list[Change]:
        return await self._run(lambda db: self._sync(db, stream, process, connections))

    @staticmethod
    def _snapshot(db: sqlite3.Connection, stream: str) -> Snapshot:
        row = db.execute(
            "SELECT version FROM drt_presence_version WHERE stream = ?", (stream,)
        ).fetchone()
        members = {
            key: Record(info, count, version).as_json()
            for key, info, count, version in db.execute(
                "SELECT key, info, connections, version FROM drt_presence_member "
                "WHERE stream = ?",
                (stream,),
            )
        }
        return (row[0] if row else 0), members

    async def snapshot(self, stream: str) -> Snapshot:
        return await self._run(lambda db: self._snapshot(db, stream))

    def snapshot_sync(self, stream: str) -> Snapshot:
        return self._in_transaction(lambda db: self._snapshot(db, stream))

    async def published(self, stream: str, versions: dict[str, int]) -> None:
        def step(db: sqlite3.Connection) -> None:
            db.executemany(
                "DELETE FROM drt_presence_unpublished "
                "WHERE stream = ? AND key = ? AND version <= ?",
                [(stream, key, version) for key, version in versions.items()],
            )

        await self._run(step)

    @staticmethod
    def _held(db: sqlite3.Connection, stream: str) -> list[Change]:
        return [
            Change(key, Record(info, count, version))
            for key, info, count, version in db.execute(
                "SELECT key, info, connections, version "
                "FROM drt_presence_unpublished WHERE stream = ?",
                (stream,),
            )
        ]

    async def unpublished(self, stream: str) -> list[Change]:
        return await self._run(lambda db: self._held(db, stream))

    async def heartbeat(self, process: str, streams: set[str]) -> bool:
        def step(db: sqlite3.Connection) -> bool:
            known = db.execute(
                "UPDATE drt_presence_process SET beat = ? WHERE process = ?",
                (self.clock(), process),
            ).rowcount
            if not known:
                db.execute(
                    "INSERT INTO drt_presence_process (process, beat) VALUES (?, ?)",
                    (process, self.clock()),
                )
            return not known

        return await self._run(step)

    async def sweep(self, process: str, expiry: float) -> dict[str, list[Change]]:
        def step(db: sqlite3.Connection) -> dict[str, list[Change]]:
            limit = self.clock() - expiry
            dead = [
                row[0]
                for row in db.execute(
                    "SELECT process FROM drt_presence_process "
                    "WHERE beat < ? AND process != ?",
                    (limit, process),
                )
            ]
            out: dict[str, list[Change]] = {}
            for gone in dead:
                streams = [
                    row[0]
                    for row in db.execute(
                        "SELECT stream FROM drt_presence_process_stream "
                        "WHERE process = ?",
                        (gone,),
                    )
                ]
                for stream in streams:
                    changes = out.setdefault(stream, [])
                    changes += self._sync(db, stream, gone, {})
                    # What it changed but may not have published before it died.
                    changes += self._held(db, stream)
                    db.execute(
                        "INSERT OR IGNORE INTO drt_presence_process_stream "
                        "(process, stream) VALUES (?, ?)",
                        (process, stream),
                    )
                for table in ("drt_presence_process", "drt_presence_process_stream"):
                    db.execute(f"DELETE FROM {table} WHERE process = ?", (gone,))
            return out

        return await self._run(step)

    async def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
