"""The Redis layer's connections on one event loop.

redis-py's asyncio connections belong to the loop that opened them, so the
layer keeps everything tied to a loop in one :class:`Connections` object:
the command client and its scripts, the pub/sub :class:`Subscriber`, and the
``BLPOP`` calls of receives on normal channels. When the loop ends, the
object is closed (or, if the loop is already gone, abandoned) as a whole.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from django_realtime.layers.redis._core import (
    GROUP_SEND_SCRIPT,
    SEND_SCRIPT,
    RedisLayerStats,
    Subscriptions,
)
from django_realtime.layers.redis._pubsub import Subscriber

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

# Longest a BLPOP blocks before it is issued again; it must stay below the
# connection's socket timeout, which would otherwise cut it off.
_MAX_BLOCK = 2.0


class Connections:
    """Open, on first use, the connections one layer needs on one loop.

    Args:
        url: The Redis URL.
        redis_kwargs: Keyword arguments for ``Redis.from_url``.
        client_name: ``CLIENT SETNAME`` of the pub/sub connection.
        table: The layer's wanted topics.
        where: The server, for messages (no credentials).
        on_message: Called with each pub/sub message's topic and data.
        on_tick: Awaited periodically by the pub/sub reader.
        stats: The layer's counters.
        subscribe_timeout: Seconds to wait for a subscription.
        health_check_interval: Seconds of pub/sub silence before a PING.
        expiry_ms: Time to live of a normal channel's list, in milliseconds.
        idle_timeout: Seconds a command connection may stay idle before it
            is closed; the most recently used one stays open.
    """

    def __init__(
        self,
        *,
        url: str,
        redis_kwargs: dict[str, Any],
        client_name: str,
        table: Subscriptions,
        where: str,
        on_message: Callable[[bytes, bytes], None],
        on_tick: Callable[[], Awaitable[None]],
        stats: RedisLayerStats,
        subscribe_timeout: float,
        health_check_interval: float,
        expiry_ms: int,
        idle_timeout: float,
    ) -> None:
        from redis.asyncio import Redis

        from django_realtime.layers.redis._pool import ShrinkingPool

        # Bursts of commands and BLPOPs open connections; the pool closes
        # them once idle, so that a quiet process is back to one.
        pool = ShrinkingPool.from_url(url, idle_timeout=idle_timeout, **redis_kwargs)
        self.redis: Redis = Redis.from_pool(pool)
        self.send_script = self.redis.register_script(SEND_SCRIPT)
        self.group_send_script = self.redis.register_script(GROUP_SEND_SCRIPT)
        self._client_name = client_name
        self._expiry_ms = expiry_ms
        self.subscriber = Subscriber(
            table,
            connect=self._pubsub_connection,
            where=where,
            on_message=on_message,
            on_tick=on_tick,
            stats=stats,
            timeout=subscribe_timeout,
            interval=health_check_interval,
        )
        timeout = self.redis.connection_pool.connection_kwargs.get("socket_timeout")
        self._block = min(_MAX_BLOCK, timeout / 2) if timeout else _MAX_BLOCK
        # BLPOPs of cancelled receives, by key, until a receive adopts them.
        self._orphans: dict[str, deque[asyncio.Task[Any]]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def pop(self, key: str) -> bytes | None:
        """Wait a little for the next entry of the list ``key``.

        Returns:
            The entry, or ``None`` if none came within the blocking time.

        Cancelling loses no entry: the ``BLPOP`` carries on, and what it
        takes goes to the next ``pop`` of the same key, or back to the head
        of the list if there is none when it arrives.
        """
        orphans = self._orphans.get(key)
        if orphans:
            task = orphans.popleft()
        else:
            task = asyncio.ensure_future(self.redis.blpop([key], timeout=self._block))
        try:
            item = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                self._put_back_unclaimed(key, task, registered=False)
            else:
                self._orphans.setdefault(key, deque()).append(task)
                task.add_done_callback(functools.partial(self._put_back_unclaimed, key))
            raise
        if item is None:
            return None
        entry: bytes = item[1]
        return entry

    async def close(self) -> None:
        """Stop the tasks and close the connections."""
        orphans = [task for tasks in self._orphans.values() for task in tasks]
        for task in orphans:
            task.cancel()
        if self._background:
            # Entries being put back on their lists: let them land.
            await asyncio.wait(self._background, timeout=1.0)
        await asyncio.gather(*orphans, *self._background, return_exceptions=True)
        await self.subscriber.stop()
        await self.redis.aclose()

    def abandon(self) -> None:
        """Forget everything without awaiting: the loop has ended."""
        self.subscriber.abandon()
        self._orphans.clear()
        self._background.clear()

    # Internals

    def _pubsub_connection(self) -> AbstractConnection:
        pool = self.redis.connection_pool
        kwargs = {**pool.connection_kwargs, "client_name": self._client_name}
        return pool.connection_class(**kwargs)

    def _put_back_unclaimed(
        self, key: str, task: asyncio.Task[Any], registered: bool = True
    ) -> None:
        """Put back what a cancelled receive's BLPOP took, if nobody took it."""
        if registered:
            orphans = self._orphans.get(key)
            if orphans is None or task not in orphans:
                return  # a later pop adopted it
            orphans.remove(task)
            if not orphans:
                del self._orphans[key]
        if task.cancelled() or task.exception() is not None:
            return
        item = task.result()
        if item is None:
            return
        put_back = asyncio.get_running_loop().create_task(self._put_back(key, item[1]))
        self._background.add(put_back)
        put_back.add_done_callback(self._background.discard)

    async def _put_back(self, key: str, entry: bytes) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, entry)
            pipe.pexpire(key, self._expiry_ms)
            await pipe.execute()
