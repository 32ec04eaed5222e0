"""The Redis history store's connections on one event loop.

redis-py's asyncio connections belong to the loop that opened them, so the
store keeps one :class:`LoopConnections` per loop it is used on: a command
client with the store's scripts, and a pub/sub
:class:`~django_realtime.layers.redis._pubsub.Subscriber`, started only on
the one loop that listens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django_realtime.layers.redis._core import RedisLayerStats, Subscriptions
from django_realtime.layers.redis._pubsub import Subscriber
from django_realtime.streams.stores._redis_scripts import PUBLISH, READ

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

# Seconds of pub/sub silence before a PING (as long again: connection lost).
_PING_INTERVAL = 15.0


class LoopConnections:
    """Open the connections a history store needs on one event loop.

    Args:
        loop: The loop they belong to.
        url: The Redis URL.
        redis_kwargs: Keyword arguments for ``BlockingConnectionPool.from_url``.
        client_name: The command connections' name; the pub/sub
            connection's is this plus ``-pubsub``.
        where: The server, for messages (no credentials).
        subscribe_timeout: Seconds to wait for a subscription's confirmation.
        on_message: Called with each announcement's topic and payload.
        on_active: Called with each topic Redis confirms.
        idle_timeout: Seconds a command connection may stay idle before it
            is closed; the most recently used one stays open.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        url: str,
        redis_kwargs: dict[str, Any],
        client_name: str,
        where: str,
        subscribe_timeout: float,
        on_message: Callable[[bytes, bytes], None],
        on_active: Callable[[str], None],
        idle_timeout: float,
    ) -> None:
        from redis.asyncio import Redis

        from django_realtime.layers.redis._pool import ShrinkingBlockingPool

        self.loop = loop
        # A burst of publishes waits for a free connection instead of
        # failing once max_connections are busy; once it is over, the pool
        # closes what it opened for it.
        pool = ShrinkingBlockingPool.from_url(
            url, idle_timeout=idle_timeout, **redis_kwargs
        )
        self.redis: Redis = Redis.from_pool(pool)
        self.publish = self.redis.register_script(PUBLISH)
        self.read = self.redis.register_script(READ)
        #: Closes these connections when the loop shuts down (set by the store).
        self.guard: AsyncGenerator[None, None] | None = None
        #: Whether the subscriber's announcements are delivered.
        self.listening = False
        self._pubsub_name = f"{client_name}-pubsub"
        self._deliver = on_message
        self._confirm = on_active
        # Its own table: one left on a stopped loop must share no state.
        self.subscriber = Subscriber(
            Subscriptions(),
            connect=self._pubsub_connection,
            where=where,
            on_message=self._on_message,
            on_tick=_nothing,
            stats=RedisLayerStats(),
            timeout=subscribe_timeout,
            interval=_PING_INTERVAL,
            on_active=self._on_active,
            topics="stream topic(s) (only the announcements: history keeps "
            "the messages, and listeners catch up when it is back)",
        )

    def listen(self, topics: list[str]) -> None:
        """Want ``topics``, start the subscriber and deliver what it reads."""
        for topic in topics:
            self.subscriber.table.want(topic)
        self.listening = True
        self.subscriber.start()

    def stop_listening(self) -> None:
        """Deliver nothing more, without awaiting: the loop has stopped.

        If the loop runs again, its reader may read on; what it reads is
        dropped, as another subscriber has taken over.
        """
        self.listening = False
        self.subscriber.abandon()

    async def close(self) -> None:
        """Stop the subscriber and close the connections."""
        self.listening = False
        await self.subscriber.stop()
        await self.redis.aclose()

    # Internals

    def _pubsub_connection(self) -> AbstractConnection:
        pool = self.redis.connection_pool
        kwargs = {**pool.connection_kwargs, "client_name": self._pubsub_name}
        return pool.connection_class(**kwargs)

    def _on_message(self, topic: bytes, payload: bytes) -> None:
        if self.listening:
            self._deliver(topic, payload)

    def _on_active(self, topic: str) -> None:
        if self.listening:
            self._confirm(topic)


async def _nothing() -> None:
    """Do no periodic housekeeping."""


def describe(url: str) -> str:
    """Return ``url`` without credentials, for messages."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"{parts.scheme}://{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
