"""The Redis layer's pub/sub connection: subscribe, read, reconnect.

One :class:`Subscriber` per layer and event loop owns one connection in
subscribe mode. It subscribes each wanted topic once (callers asking for the
same topic share one ``SUBSCRIBE`` and wait for its confirmation), reads
messages in a single task and hands them to the layer without creating a
task per message, pings when the connection is silent, and on a loss
reconnects with backoff, subscribes every wanted topic again and logs the
time window in which published messages were lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django_realtime.layers.redis._core import (
    RedisLayerStats,
    Subscriptions,
    backoff_delay,
)

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

logger = logging.getLogger("django_realtime.layers.redis.layer")

# Topics per SUBSCRIBE command when subscribing everything again.
_SUBSCRIBE_BATCH = 1000


class Subscriber:
    """Keep one pub/sub connection subscribed to the wanted topics.

    Args:
        table: The wanted topics; it outlives the subscriber, so a new one
            (on a new event loop) subscribes the same topics.
        connect: Return a new, unconnected redis-py connection.
        where: The server, for messages (no credentials).
        on_message: Called with the topic and data of each message.
        on_tick: Awaited every ``interval`` seconds, for housekeeping.
        stats: Where reconnections are counted.
        timeout: Seconds :meth:`subscribe` waits for a confirmation.
        interval: Seconds of silence before a PING; as long again without an
            answer counts as a lost connection.
        on_active: Called with each topic when Redis confirms it on a
            connection: a topic confirmed again while still wanted is back
            after a loss, and messages published meanwhile were missed.
        topics: What the topics are, for the warning about a lost connection.
    """

    def __init__(
        self,
        table: Subscriptions,
        *,
        connect: Callable[[], AbstractConnection],
        where: str,
        on_message: Callable[[bytes, bytes], None],
        on_tick: Callable[[], Awaitable[None]],
        stats: RedisLayerStats,
        timeout: float,
        interval: float,
        on_active: Callable[[str], None] | None = None,
        topics: str = "topic(s) (its groups and its channels)",
    ) -> None:
        self.table = table
        self._connect = connect
        self._where = where
        self._on_message = on_message
        self._on_tick = on_tick
        self._stats = stats
        self._timeout = timeout
        self._interval = interval
        self._on_active = on_active
        self._topics = topics
        self._conn: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._down_since: float | None = None
        self._last_error: BaseException | None = None
        self._stopping = asyncio.Event()
        table.connection_lost()

    async def subscribe(self, topic: str) -> None:
        """Want ``topic`` and return once Redis has confirmed it.

        Raises:
            redis.exceptions.ConnectionError: No confirmation within the
                timeout (the connection is down), or the subscriber was
                stopped meanwhile.
        """
        if self.table.want(topic):
            await self._send("SUBSCRIBE", topic)
        self.start()
        if self.table.is_active(topic):
            return
        future = self._waiters.get(topic)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiters[topic] = future
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(future)
        except TimeoutError:
            raise self._error(
                f"did not confirm the subscription to {topic!r} within "
                f"{self._timeout} s"
            ) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise self._error(
                    f"closed the connection before confirming {topic!r}"
                ) from None
            raise

    async def unsubscribe(self, topics: list[str]) -> None:
        """Stop wanting ``topics``; send one ``UNSUBSCRIBE`` for them."""
        send = [topic for topic in topics if self.table.unwant(topic)]
        for topic in topics:
            future = self._waiters.pop(topic, None)
            if future is not None and not future.done():
                future.set_result(None)
        if send:
            await self._send("UNSUBSCRIBE", *send)

    def start(self) -> None:
        """Start the reading task unless it runs."""
        if self._task is None or self._task.done():
            # In an empty context: the task, and the socket it opens, would
            # otherwise keep the caller's context (a consumer's) alive.
            self._task = asyncio.get_running_loop().create_task(
                self._run(),
                name=f"redis pub/sub reader {self._where}",
                context=contextvars.Context(),
            )

    async def stop(self) -> None:
        """Stop reading and close the connection."""
        task, self._task = self._task, None
        self._stopping.set()
        while task is not None and not task.done():
            # With a socket_timeout on Python 3.11, redis-py's wait_for() can
            # swallow a cancellation; _run then sees _stopping and returns.
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        self.abandon()

    def abandon(self) -> None:
        """Forget the connection and waiters without awaiting anything.

        Used when the event loop they belong to has ended.
        """
        self.table.connection_lost()
        self._conn = None
        self._task = None
        for future in self._waiters.values():
            if not future.done() and not future.get_loop().is_closed():
                future.cancel()
        self._waiters.clear()

    # Internals

    def _error(self, what: str) -> Exception:
        from redis.exceptions import ConnectionError as RedisConnectionError

        reason = f" ({self._last_error})" if self._last_error else ""
        return RedisConnectionError(f"Redis at {self._where} {what}{reason}.")

    async def _send(self, *args: str) -> None:
        conn = self._conn
        if conn is None or not self.table.connected:
            return  # _run subscribes everything wanted when it connects
        try:
            await conn.send_command(*args, check_health=False)
        except Exception as error:
            # The connection went down meanwhile (redis-py may even fail with
            # an AttributeError on a closed writer); _run notices the loss and
            # subscribes everything wanted on the next connection.
            logger.debug("Cannot send %s on the pub/sub connection: %r", args[0], error)

    async def _run(self) -> None:
        from redis.exceptions import RedisError

        attempt = 0
        while not self._stopping.is_set():
            conn = self._connect()
            failure: BaseException | None = None
            try:
                async with asyncio.timeout(self._timeout):
                    await conn.connect()  # type: ignore[no-untyped-call]
                if self._stopping.is_set():
                    return
                self._conn = conn
                topics = self.table.connection_made()
                for start in range(0, len(topics), _SUBSCRIBE_BATCH):
                    batch = topics[start : start + _SUBSCRIBE_BATCH]
                    await conn.send_command("SUBSCRIBE", *batch, check_health=False)
                self._restored(len(topics))
                attempt = 0
                await self._read(conn)
            except (RedisError, OSError) as error:
                failure = error
            finally:
                self.table.connection_lost()
                if self._conn is conn:
                    self._conn = None
                await conn.disconnect(nowait=True)
            self._lost(failure)
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, jitter=random.random()))

    async def _read(self, conn: AbstractConnection) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError

        loop = asyncio.get_running_loop()
        read = conn.read_response
        interval = self._interval
        on_message = self._on_message
        pinged = False
        next_tick = loop.time() + interval
        while True:
            response = await read(timeout=interval)
            if response is None:
                if pinged:
                    raise RedisConnectionError(f"No answer to PING within {interval} s")
                await conn.send_command("PING", check_health=False)
                pinged = True
            else:
                pinged = False
                kind = response[0]
                if kind == b"message":
                    try:
                        on_message(response[1], response[2])
                    except Exception:
                        logger.exception(
                            "Cannot deliver a message from topic %r.", response[1]
                        )
                elif kind == b"subscribe":
                    self._confirmed(response[1].decode())
            if loop.time() >= next_tick:
                next_tick = loop.time() + interval
                await self._on_tick()

    def _confirmed(self, topic: str) -> None:
        if self.table.subscribed(topic):
            future = self._waiters.pop(topic, None)
            if future is not None and not future.done():
                future.set_result(None)
            if self._on_active is not None:
                self._on_active(topic)

    def _lost(self, error: BaseException | None) -> None:
        self._last_error = error
        if self._down_since is not None:
            return
        self._down_since = time.time()
        logger.warning(
            "The Redis pub/sub connection to %s is down (%s); reconnecting. "
            "Until it is back, messages published to this process's %d "
            "%s are lost.",
            self._where,
            error,
            len(self.table.wanted),
            self._topics,
        )

    def _restored(self, topics: int) -> None:
        self._last_error = None
        since, self._down_since = self._down_since, None
        if since is None:
            return
        down = max(0.0, time.time() - since)
        self._stats.reconnects += 1
        self._stats.disconnected_seconds += down
        logger.warning(
            "Reconnected to Redis pub/sub at %s after %.2f s and subscribed "
            "again to %d topic(s); messages published to them from about %s "
            "until now were lost.",
            self._where,
            down,
            topics,
            datetime.fromtimestamp(since, UTC).isoformat(timespec="milliseconds"),
        )
