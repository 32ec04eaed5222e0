"""Presence kept in Redis, shared by every process of the Redis store.

Beside each stream's rules (:mod:`._redis_scripts`), processes beat: a
sorted set ``<prefix>:{presence}:procs`` holds each process's last
heartbeat, on Redis's clock, and ``<prefix>:{presence}:proc:<id>`` the
streams where it holds connections. A process silent for longer than the
expiry is swept by any other: its connections are removed, stream by
stream, as if each had closed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from django_realtime.presence._redis_scripts import (
    DEAD,
    FORGET,
    HEARTBEAT,
    PUBLISHED,
    SNAPSHOT,
    SYNC,
    TRACK,
    UNPUBLISHED,
    UNTRACK,
)
from django_realtime.presence.backends import PresenceBackend, Snapshot
from django_realtime.presence.model import Change, Record

if TYPE_CHECKING:
    from redis import Redis as SyncRedis
    from redis.asyncio import Redis

__all__ = ["RedisPresence"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _changes(rows: Any) -> list[Change]:
    return [
        Change(_text(key), Record(_text(info), int(n), int(v)))
        for key, n, v, info in rows
    ]


class RedisPresence(PresenceBackend):
    """Keep presence in Redis at ``url``, keys under ``prefix``."""

    shared = True
    #: Most connections to Redis on one event loop; more steps wait.
    max_connections = 20

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._procs = f"{prefix}:{{presence}}:procs"
        self._proc = f"{prefix}:{{presence}}:proc:"
        # Each loop's client, and the generator that closes it with the loop.
        self._clients: dict[
            asyncio.AbstractEventLoop, tuple[Redis, AsyncGenerator[None, None]]
        ] = {}
        self._sync: SyncRedis | None = None

    def _keys(self, stream: str) -> list[str]:
        base = f"{self.prefix}:presence:{{{stream}}}"
        return [f"{base}:conns", f"{base}:members", f"{base}:v", f"{base}:unpublished"]

    async def _client(self) -> Redis:
        """Return the running loop's client; it closes as the loop shuts down."""
        loop = asyncio.get_running_loop()
        held = self._clients.get(loop)
        if held is None:
            from redis.asyncio import BlockingConnectionPool, Redis

            for old in [lp for lp in self._clients if lp.is_closed()]:
                # Ended without shutdown_asyncgens(): nothing can close it now.
                del self._clients[old]
            # A burst of arrivals waits for a connection instead of failing.
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=None,
                client_name=f"{self.prefix}-presence",
            )
            client = Redis.from_pool(pool)
            guard = self._closed_with(loop, client)
            held = self._clients[loop] = (client, guard)
            await anext(guard)
        return held[0]

    async def _closed_with(
        self, loop: asyncio.AbstractEventLoop, client: Redis
    ) -> AsyncGenerator[None, None]:
        # An async generator: the loop's shutdown_asyncgens() (asyncio.run,
        # asgiref's async_to_sync) finishes it while the loop still runs, so
        # a client of a short-lived loop is closed with it, not left open.
        try:
            yield
        finally:
            if self._clients.get(loop, (None,))[0] is client:
                del self._clients[loop]
            await client.aclose()

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return await (await self._client()).eval(script, len(keys), *keys, *args)

    async def track(
        self, stream: str, conn: str, key: str, info: str, process: str
    ) -> list[Change]:
        rows = await self._run(TRACK, self._keys(stream), [conn, key, info, process])
        return _changes(rows)

    async def untrack(
        self, stream: str, conn: str, process: str | None = None
    ) -> list[Change]:
        args = [conn, process or ""]
        return _changes(await self._run(UNTRACK, self._keys(stream), args))

    async def sync(
        self, stream: str, process: str, connections: dict[str, tuple[str, str]]
    ) -> list[Change]:
        args: list[str] = [process]
        for conn, (key, info) in connections.items():
            args += [conn, key, info]
        return _changes(await self._run(SYNC, self._keys(stream), args))

    @staticmethod
    def _snapshot(reply: Any) -> Snapshot:
        version, members = reply
        return int(version), json.loads(members)

    async def snapshot(self, stream: str) -> Snapshot:
        return self._snapshot(await self._run(SNAPSHOT, self._keys(stream)[1:3], []))

    def snapshot_sync(self, stream: str) -> Snapshot:
        if self._sync is None:
            from redis import Redis as SyncRedis

            self._sync = SyncRedis.from_url(self.url)
        keys = self._keys(stream)[1:3]
        return self._snapshot(self._sync.eval(SNAPSHOT, len(keys), *keys))

    async def published(self, stream: str, versions: dict[str, int]) -> None:
        args: list[Any] = []
        for key, version in versions.items():
            args += [key, version]
        await self._run(PUBLISHED, self._keys(stream)[3:], args)

    async def unpublished(self, stream: str) -> list[Change]:
        return _changes(await self._run(UNPUBLISHED, self._keys(stream)[3:], []))

    async def heartbeat(self, process: str, streams: set[str]) -> bool:
        keys = [self._procs, self._proc + process]
        return bool(await self._run(HEARTBEAT, keys, [process, *sorted(streams)]))

    async def sweep(self, process: str, expiry: float) -> dict[str, list[Change]]:
        dead = await self._run(DEAD, [self._procs, self._proc], [expiry, process])
        out: dict[str, list[Change]] = {}
        for proc, streams in dead:
            name = _text(proc)
            for stream in map(_text, streams):
                changes = out.setdefault(stream, [])
                changes += await self.sync(stream, name, {})
                # What it changed but may not have published before it died.
                changes += await self.unpublished(stream)
                # Swept by this process now: its own sweep, if it dies too.
                await (await self._client()).sadd(self._proc + process, stream)
            await self._run(FORGET, [self._procs, self._proc + name], [name])
        return out

    async def close(self) -> None:
        """Close the clients of every event loop, and the sync client."""
        here = asyncio.get_running_loop()
        for loop, (_, guard) in list(self._clients.items()):
            if loop is here:
                await guard.aclose()
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(guard.aclose(), loop)
                await asyncio.wrap_future(done)
        self._clients.clear()
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
