"""The RabbitMQ layer's connection to the broker, on a thread of its own.

aio-pika's connections belong to the event loop that opened them, and a
layer is called from many loops (the server's, and a new one for each
``async_to_sync`` call from a view or the shell). So a :class:`Link` runs
one loop in one thread per layer and process, started on first use and
ended by :meth:`Link.close`: whichever loop calls, the process holds one
connection to the broker and one extra thread.

The link opens the connection on first use and again after it was lost; on
each new connection it calls ``on_connect`` (on its loop) so the layer can
declare its queues, bindings and consumers again. While the broker cannot
be reached, operations raise
:exc:`~django_realtime.exceptions.ChannelLayerError` at once, and a
background task tries again every few seconds if the layer has anything
to consume.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import (
    AMQPChannelError,
    AMQPError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
    PublishError,
)

from django_realtime.exceptions import ChannelLayerError

__all__ = ["Link", "Outcome"]

logger = logging.getLogger("django_realtime.layers.rabbitmq")

T = TypeVar("T")

# Seconds between two attempts to reconnect in the background, at most.
_RETRY_MAX = 2.0


class Outcome(enum.Enum):
    """What the broker said about a published message."""

    #: Taken by every queue it was routed to.
    SENT = "sent"
    #: Refused by a queue at its length limit (``reject-publish``).
    FULL = "full"
    #: Routed to no queue (the queue does not exist).
    UNROUTABLE = "unroutable"


class Link:
    """Hold one connection to RabbitMQ, used from any thread and loop.

    Args:
        url: The broker's AMQP URL.
        where: The broker, for messages (no credentials).
        name: The connection's name, as shown by ``rabbitmqctl
            list_connections name``.
        timeout: Seconds to wait for the connection and for each operation.
        on_connect: Awaited on the link's loop after each new connection,
            before any operation uses it.
        on_lost: Called on the link's loop when the connection is lost.
        on_fork: Called in a forked child, before the child's first use:
            the thread and the connection stayed in the parent.
    """

    def __init__(
        self,
        url: str,
        *,
        where: str,
        name: str,
        timeout: float,
        on_connect: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        on_fork: Callable[[], None],
    ) -> None:
        self.url = url
        self.where = where
        self.name = name
        self.timeout = timeout
        #: Whether to reconnect in the background when the connection is
        #: lost (the layer has consumers to restore).
        self.wanted = False
        self._on_connect = on_connect
        self._on_lost = on_lost
        self._on_fork = on_fork
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._connection: AbstractConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._consumer: AbstractChannel | None = None
        self._connecting: asyncio.Lock | None = None
        self._retry: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # From any thread

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the link's loop; return its result here."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        return await asyncio.wrap_future(future)

    def post_call(self, function: Callable[[], object]) -> None:
        """Call ``function`` on the link's loop, if it still runs."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(function)

    @property
    def on_loop(self) -> bool:
        """Return whether the caller runs on the link's loop."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def close(self) -> None:
        """Close the connection and end the thread.

        The link may be used again afterwards: it starts a new thread.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(future)
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, self.timeout + 5)

    # On the link's loop

    async def channels(self) -> tuple[AbstractChannel, AbstractChannel]:
        """Return the (publishing, consuming) channels; connect if needed.

        Raises:
            ChannelLayerError: The broker cannot be reached.
        """
        if self._publisher is not None and self._consumer is not None:
            return self._publisher, self._consumer
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is None or self._consumer is None:
                await self._drop_connection()
                await self._connect()
            elif self._publisher is None:
                await self._reopen_publisher()
            publisher, consumer = self._publisher, self._consumer
        if publisher is None or consumer is None:
            raise ChannelLayerError(
                f"Lost the connection to RabbitMQ at {self.where} while setting it up."
            )
        return publisher, consumer

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, Any],
        expiration: float | None = None,
    ) -> Outcome:
        """Publish and wait for the broker's confirmation.

        Raises:
            ChannelLayerError: The connection failed before the broker
                confirmed: the message may or may not have been queued.
        """
        publisher, _ = await self.channels()
        message = aio_pika.Message(body, headers=headers, expiration=expiration)
        target = (
            publisher.default_exchange
            if not exchange
            else await publisher.get_exchange(exchange, ensure=False)
        )
        try:
            async with asyncio.timeout(self.timeout):
                await target.publish(message, routing_key, mandatory=True)
        except PublishError:
            return Outcome.UNROUTABLE
        except DeliveryError:
            return Outcome.FULL
        except ChannelNotFoundEntity:
            # The exchange is gone (another process's flush): so are all
            # its bindings. The broker closed the channel; open another.
            self._forget_channels(publisher, reopen_only=True)
            return Outcome.UNROUTABLE
        except (AMQPError, ConnectionError, RuntimeError, TimeoutError) as error:
            self._forget_channels(publisher)
            raise ChannelLayerError(
                f"Lost RabbitMQ at {self.where} before it confirmed a message "
                f"to {routing_key!r}: {error!r}. The message may not have been "
                "sent."
            ) from error
        return Outcome.SENT

    async def operate(
        self, what: str, operation: Callable[[AbstractChannel], Awaitable[T]]
    ) -> T | None:
        """Run a declaration on the publishing channel.

        Returns ``None`` if the broker answered 404 (the queue or exchange
        does not exist).

        Raises:
            ChannelLayerError: The broker refused it, or cannot be reached.
        """
        publisher, _ = await self.channels()
        try:
            async with asyncio.timeout(self.timeout):
                return await operation(publisher)
        except ChannelNotFoundEntity:
            self._forget_channels(publisher, reopen_only=True)
            return None
        except ChannelPreconditionFailed as error:
            self._forget_channels(publisher, reopen_only=True)
            raise ChannelLayerError(
                f"RabbitMQ at {self.where} refused to {what}: {error}. A queue "
                "of this name exists with other arguments: every process must "
                "configure the layer with the same capacity and expiry."
            ) from error
        except (AMQPError, ConnectionError, RuntimeError, TimeoutError) as error:
            self._forget_channels(
                publisher, reopen_only=isinstance(error, AMQPChannelError)
            )
            raise ChannelLayerError(
                f"RabbitMQ at {self.where} failed to {what}: {error!r}."
            ) from error

    async def consume(
        self,
        queue: str,
        callback: Callable[[AbstractIncomingMessage], Awaitable[None]],
        *,
        no_ack: bool,
    ) -> str:
        """Start consuming ``queue`` on the consuming channel (prefetch 1
        when acknowledging); return the consumer tag.
        """
        _, consumer = await self.channels()
        try:
            async with asyncio.timeout(self.timeout):
                handle = await consumer.get_queue(queue, ensure=False)
                tag: str = await handle.consume(callback, no_ack=no_ack)
                return tag
        except (AMQPError, ConnectionError, RuntimeError, TimeoutError) as error:
            # The broker may have closed the consuming channel, and every
            # consumer on it: connect again, which starts them all again.
            self.spawn(self._drop_connection())
            raise ChannelLayerError(
                f"RabbitMQ at {self.where} failed to consume {queue!r}: {error!r}."
            ) from error

    async def cancel(self, queue: str, tag: str) -> None:
        """Stop the consumer ``tag`` of ``queue``, if still connected."""
        consumer = self._consumer
        if consumer is None:
            return
        async with asyncio.timeout(self.timeout):
            handle = await consumer.get_queue(queue, ensure=False)
            await handle.cancel(tag)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[None]:
        """Run ``coroutine`` in the background on the link's loop; log failures.

        The task is cancelled by :meth:`close`.
        """
        task = asyncio.get_running_loop().create_task(self._logged(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Internals

    def adopt(self) -> None:
        """Start afresh if this process was forked from the one that used the link.

        The thread and the connection stayed in the parent: the child
        forgets them (and calls ``on_fork``) before its first use.
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._connection = self._publisher = self._consumer = None
        self._connecting = self._retry = None
        self._tasks = set()
        self._on_fork()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        self.adopt()
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name="rabbitmq-layer", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        """Run ``loop`` until stopped, then end what still runs on it and close it.

        What :meth:`close` did not end (aiormq's reader and writer of a
        connection being opened, say) is cancelled and awaited, as
        :func:`asyncio.run` does: a task left pending on a closed loop
        fails when it is collected.
        """
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True)
                    )
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _connect(self) -> None:
        try:
            connection = await aio_pika.connect(
                self.url,
                timeout=self.timeout,
                client_properties={"connection_name": self.name},
            )
        except (AMQPError, OSError, TimeoutError) as error:
            raise ChannelLayerError(
                f"Could not connect to RabbitMQ at {self.where}: {error!r}."
            ) from error
        try:
            publisher = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            consumer = await connection.channel(publisher_confirms=False)
            await consumer.set_qos(prefetch_count=1)
        except (AMQPError, OSError, TimeoutError) as error:
            await connection.close()
            raise ChannelLayerError(
                f"Could not open channels on RabbitMQ at {self.where}: {error!r}."
            ) from error
        connection.close_callbacks.add(self._closed)
        self._connection, self._publisher, self._consumer = (
            connection,
            publisher,
            consumer,
        )
        logger.debug("Connected to RabbitMQ at %s.", self.where)
        try:
            await self._on_connect()
        except ChannelLayerError:
            await self._drop_connection()
            raise

    def _closed(self, connection: Any, error: BaseException | None) -> None:
        if connection is not self._connection:
            return
        self._connection = self._publisher = self._consumer = None
        if error is not None:
            logger.warning(
                "Lost the connection to RabbitMQ at %s: %r.", self.where, error
            )
        self._on_lost()
        if self.wanted and self._retry is None:
            self._retry = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.25
        try:
            while self.wanted and self._connection is None:
                await asyncio.sleep(delay)
                try:
                    await self.channels()
                except ChannelLayerError as error:
                    logger.debug("Reconnecting to RabbitMQ failed: %s", error)
                    delay = min(delay * 2, _RETRY_MAX)
                else:
                    logger.warning("Reconnected to RabbitMQ at %s.", self.where)
        finally:
            self._retry = None

    def _forget_channels(
        self, channel: AbstractChannel, reopen_only: bool = False
    ) -> None:
        """Stop using a channel the broker closed (or a failed connection)."""
        if channel is not self._publisher:
            return
        if reopen_only and self._connection is not None:
            # The next operation opens another (see channels()).
            self._publisher = None
        else:
            self.spawn(self._drop_connection())

    async def _reopen_publisher(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            self._publisher = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
        except (AMQPError, OSError, RuntimeError) as error:
            await self._drop_connection()
            raise ChannelLayerError(
                f"Could not open a channel on RabbitMQ at {self.where}: {error!r}."
            ) from error

    async def _drop_connection(self) -> None:
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(Exception):
            await connection.close()
        if self._connection is connection:
            self._closed(connection, None)

    async def _shutdown(self) -> None:
        self.wanted = False
        tasks = [*self._tasks, *([self._retry] if self._retry else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        connection, self._connection = self._connection, None
        self._publisher = self._consumer = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    @staticmethod
    async def _logged(coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except ChannelLayerError as error:
            logger.warning("%s", error)
        except Exception:
            logger.exception("RabbitMQ layer background operation failed.")
