"""Presence kept in the PostgreSQL store's database, shared by every process.

Six tables, created by the app's migration ``0005_postgres_presence`` on
PostgreSQL databases only:

- ``drt_pg_presence_conn``: one row per connection: its stream, member key
  and process (its owner, :class:`~.model.Roster`);
- ``drt_pg_presence_member``: one row per member: its info, number of
  connections and the version of its last change;
- ``drt_pg_presence_version``: each stream's version counter;
- ``drt_pg_presence_process``: each process's last heartbeat, on the
  database's clock (so the machines' clocks do not matter), and
  ``drt_pg_presence_process_stream`` the streams where it changed
  something;
- ``drt_pg_presence_unpublished``: each member's newest change not yet
  known to be published (a sweep publishes those of the streams of a dead
  process).

Each step is one transaction that first takes a transaction-level
advisory lock on each stream it changes (every step in one order), so
processes never interleave inside a change of a stream. A sweep claims
the silent processes with ``FOR UPDATE SKIP LOCKED`` (two sweeps at once
remove each connection once); a track first locks its process's row, so
a sweep claims a process between two of its steps, never during one. A
process the backend does not know (never beaten, or swept meanwhile) that
tracks a connection is recorded as silent since ever: the next sweep
removes what it holds unless it beats first, and that beat says it was
unknown (its tracker syncs again). So the database never holds a
connection that no sweep would remove.

Steps run on a thread of their own per process (two connections to the
database), one at a time; :meth:`PostgresPresence.snapshot_sync` reads
through Django's connection of the calling thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.db import connections as databases

from django_realtime.layers._slot import EngineSlot
from django_realtime.layers.postgres.engine import Connection, Engine
from django_realtime.presence._postgres_sql import (
    JOIN,
    LEAVE,
    LOCK,
    LOCK_SPACE,
    SNAPSHOT,
)
from django_realtime.presence.backends import PresenceBackend, Snapshot
from django_realtime.presence.model import Change, Record

__all__ = ["PostgresPresence"]


async def _rows(db: Connection, query: str, params: Any = None) -> list[Any]:
    cursor = await db.execute(query, params)
    return await cursor.fetchall()


async def _one(db: Connection, query: str, params: Any = None) -> Any:
    cursor = await db.execute(query, params)
    return await cursor.fetchone()


def _snapshot(rows: list[Any]) -> Snapshot:
    version = int(rows[0][0]) if rows else 0
    members = {
        key: Record(info, count, member_version).as_json()
        for _, key, info, count, member_version in rows
        if key is not None
    }
    return version, members


class PostgresPresence(PresenceBackend):
    """Keep presence in the PostgreSQL database of ``DATABASES[alias]``.

    Args:
        alias: The ``DATABASES`` key of the PostgreSQL database (the
            history store's).
        timeout: Seconds a step waits for the database to come back before
            it fails with :exc:`~django_realtime.exceptions.ChannelLayerError`
            (nothing of it was kept).
        clock: Return the time in seconds since the epoch for heartbeats
            and sweeps; ``None`` (the default) for the database's clock,
            which every process shares.
    """

    shared = True

    def __init__(
        self,
        alias: str,
        *,
        timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.alias = alias
        self.timeout = timeout
        self.clock = clock
        self._slot: EngineSlot[Engine] = EngineSlot(self._make_engine, _nothing)

    def __repr__(self) -> str:
        return f"<PostgresPresence DATABASES[{self.alias!r}]>"

    # -- plumbing -------------------------------------------------------

    def _make_engine(self) -> Engine:
        return Engine(
            alias=self.alias,
            channels=[],
            on_notify=lambda channel, payload: None,
            on_listen=_nothing,
            look=_look,
            timeout=self.timeout,
            poll_interval=30.0,
            sweep_interval=3600.0,
            clock=self.clock,
            name="postgres-presence",
            application_name=f"drt-presence-{os.getpid()}-{id(self):x}",
        )

    async def _run(self, work: Callable[[Connection, float], Any]) -> Any:
        return await self._slot.get().submit(work)

    # -- the rules of Roster, in SQL ------------------------------------

    @staticmethod
    async def _lock(db: Connection, streams: list[str]) -> None:
        await db.execute(LOCK, (LOCK_SPACE, streams))

    @staticmethod
    async def _known(db: Connection, process: str) -> None:
        # Locks the process's row until the step ends: a sweep claims the
        # process before or after this step, never during it. Unknown (swept
        # meanwhile): silent since ever, until it beats.
        await db.execute(
            "INSERT INTO drt_pg_presence_process AS p (process, beat) "
            "VALUES (%s, 0) ON CONFLICT (process) DO UPDATE SET beat = p.beat",
            (process,),
        )

    @staticmethod
    async def _holds(db: Connection, process: str, stream: str) -> None:
        await db.execute(
            "INSERT INTO drt_pg_presence_process_stream (process, stream) "
            "VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (process, stream),
        )

    async def _track(
        self,
        db: Connection,
        stream: str,
        conn: str,
        key: str,
        info: str,
        process: str,
        *,
        take: bool = True,
    ) -> Change | None:
        params = {
            "stream": stream,
            "conn": conn,
            "key": key,
            "info": info,
            "process": process,
        }
        row = await _one(db, JOIN, params)
        if row is not None:
            return Change(key, Record(info, int(row[0]), int(row[1])))
        if take:
            # Held by another process, say: this one owns it now.
            await db.execute(
                "UPDATE drt_pg_presence_conn SET process = %s "
                "WHERE stream = %s AND conn = %s AND process <> %s",
                (process, stream, conn, process),
            )
            await self._holds(db, process, stream)
        return None

    async def _untrack(
        self, db: Connection, stream: str, conn: str, process: str | None = None
    ) -> Change | None:
        params = {"stream": stream, "conn": conn, "process": process}
        row = await _one(db, LEAVE, params)
        if row is None:
            return None
        key, info, count, version = row
        return Change(key, Record(info, int(count), int(version)))

    async def _sync(
        self,
        db: Connection,
        stream: str,
        process: str,
        connections: dict[str, tuple[str, str]],
    ) -> list[Change]:
        held = await _rows(
            db,
            "SELECT conn FROM drt_pg_presence_conn WHERE process = %s AND stream = %s",
            (process, stream),
        )
        changes = [
            change
            for (conn,) in held
            if conn not in connections
            if (change := await self._untrack(db, stream, conn, process)) is not None
        ]
        # Those tracked anywhere stay as they are: only the others are added.
        there = {
            row[0]
            for row in await _rows(
                db,
                "SELECT conn FROM drt_pg_presence_conn "
                "WHERE stream = %s AND conn = ANY(%s::text[])",
                (stream, list(connections)),
            )
        }
        for conn, (key, info) in connections.items():
            if conn in there:
                continue
            change = await self._track(db, stream, conn, key, info, process, take=False)
            if change is not None:
                changes.append(change)
        return changes

    @staticmethod
    async def _held(db: Connection, stream: str) -> list[Change]:
        return [
            Change(key, Record(info, count, version))
            for key, info, count, version in await _rows(
                db,
                "SELECT key, info, connections, version "
                "FROM drt_pg_presence_unpublished WHERE stream = %s",
                (stream,),
            )
        ]

    # -- the backend ----------------------------------------------------

    async def track(
        self, stream: str, conn: str, key: str, info: str, process: str
    ) -> list[Change]:
        async def work(db: Connection, now: float) -> Change | None:
            await self._known(db, process)
            await self._lock(db, [stream])
            return await self._track(db, stream, conn, key, info, process)

        change = await self._run(work)
        return [] if change is None else [change]

    async def untrack(
        self, stream: str, conn: str, process: str | None = None
    ) -> list[Change]:
        async def work(db: Connection, now: float) -> Change | None:
            await self._lock(db, [stream])
            return await self._untrack(db, stream, conn, process)

        change = await self._run(work)
        return [] if change is None else [change]

    async def sync(
        self, stream: str, process: str, connections: dict[str, tuple[str, str]]
    ) -> list[Change]:
        async def work(db: Connection, now: float) -> list[Change]:
            if connections:
                await self._known(db, process)
            await self._lock(db, [stream])
            return await self._sync(db, stream, process, connections)

        changes: list[Change] = await self._run(work)
        return changes

    async def snapshot(self, stream: str) -> Snapshot:
        async def work(db: Connection, now: float) -> Snapshot:
            return _snapshot(await _rows(db, SNAPSHOT, {"stream": stream}))

        snapshot: Snapshot = await self._run(work)
        return snapshot

    def snapshot_sync(self, stream: str) -> Snapshot:
        with databases[self.alias].cursor() as cursor:
            cursor.execute(SNAPSHOT, {"stream": stream})
            return _snapshot(cursor.fetchall())

    async def published(self, stream: str, versions: dict[str, int]) -> None:
        # A newer change of a member since keeps its row (the version test
        # is evaluated again on the row as it is after a concurrent change).
        async def work(db: Connection, now: float) -> None:
            await db.execute(
                "DELETE FROM drt_pg_presence_unpublished u "
                "USING unnest(%s::text[], %s::bigint[]) AS p (key, version) "
                "WHERE u.stream = %s AND u.key = p.key AND u.version <= p.version",
                (list(versions), list(versions.values()), stream),
            )

        await self._run(work)

    async def unpublished(self, stream: str) -> list[Change]:
        async def work(db: Connection, now: float) -> list[Change]:
            return await self._held(db, stream)

        changes: list[Change] = await self._run(work)
        return changes

    async def heartbeat(self, process: str, streams: set[str]) -> bool:
        async def work(db: Connection, now: float) -> bool:
            # The beat before this one: none (or 0, recorded by a track) if
            # the backend did not know the process.
            before = await _one(
                db,
                "UPDATE drt_pg_presence_process p SET beat = %s "
                "FROM (SELECT process, beat FROM drt_pg_presence_process "
                "WHERE process = %s FOR UPDATE) old "
                "WHERE p.process = old.process RETURNING old.beat",
                (now, process),
            )
            if before is None:
                await db.execute(
                    "INSERT INTO drt_pg_presence_process AS p (process, beat) "
                    "VALUES (%s, %s) ON CONFLICT (process) DO UPDATE "
                    "SET beat = excluded.beat",
                    (process, now),
                )
            if streams:
                await db.execute(
                    "INSERT INTO drt_pg_presence_process_stream (process, stream) "
                    "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                    (process, sorted(streams)),
                )
            return before is None or not before[0]

        unknown: bool = await self._run(work)
        return unknown

    async def sweep(self, process: str, expiry: float) -> dict[str, list[Change]]:
        async def work(db: Connection, now: float) -> dict[str, list[Change]]:
            # Claimed by this sweep; another sweeping at once takes the rest.
            dead = [
                row[0]
                for row in await _rows(
                    db,
                    "SELECT process FROM drt_pg_presence_process "
                    "WHERE beat < %s AND process <> %s "
                    "ORDER BY process FOR UPDATE SKIP LOCKED",
                    (now - expiry, process),
                )
            ]
            out: dict[str, list[Change]] = {}
            if not dead:
                return out
            streams = await self._streams_of(db, dead)
            await self._lock(db, list(streams))
            for stream in sorted(streams):
                changes = out.setdefault(stream, [])
                for gone in dead:
                    changes += await self._sync(db, stream, gone, {})
                # What they changed but may not have published before they died.
                changes += await self._held(db, stream)
                # Swept by this process now: its own sweep, if it dies too.
                await self._holds(db, process, stream)
            for table in ("process", "process_stream"):
                await db.execute(
                    f"DELETE FROM drt_pg_presence_{table} "
                    "WHERE process = ANY(%s::text[])",
                    (dead,),
                )
            return out

        swept: dict[str, list[Change]] = await self._run(work)
        return swept

    @staticmethod
    async def _streams_of(db: Connection, processes: list[str]) -> set[str]:
        rows = await _rows(
            db,
            "SELECT stream FROM drt_pg_presence_process_stream "
            "WHERE process = ANY(%(p)s::text[]) UNION SELECT stream "
            "FROM drt_pg_presence_conn WHERE process = ANY(%(p)s::text[])",
            {"p": processes},
        )
        return {row[0] for row in rows}

    async def close(self) -> None:
        await self._slot.close(self.timeout + 5)


def _nothing() -> None:
    return None


async def _look(engine: Engine) -> None:
    return None
