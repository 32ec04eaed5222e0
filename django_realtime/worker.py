"""Feed messages from channel layer channels into ASGI applications.

A :class:`Worker` listens on named channels of a channel layer. For each
channel it keeps one instance of the application, with the scope
``{"type": "channel", "channel": name}``, and hands it the messages that
arrive on that channel through its ASGI ``receive``. This is how background
tasks run: a view sends ``{"type": "thumbnail.make", ...}`` to the
``"thumbnails"`` channel, and ``manage.py runworker thumbnails`` runs it.

Each channel has one long-lived receive loop; there is no task per message.
A channel's instance gets its messages one at a time, in order. When an
instance returns or fails, the failure is logged and the next message on the
channel starts a new instance.

A worker takes a message from the layer only when its instance is ready
for one (plus ``max_pending`` more, 0 by default), so messages it cannot
start yet stay in the layer for another worker: a long job on one worker
does not strand the messages queued behind it.

:meth:`Worker.stop` stops receiving; messages already taken from the layer
are still handled, for up to ``shutdown_timeout`` seconds. Messages taken
but not started by then are sent back to their channel for another worker;
a message whose handling was cut short is logged as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from django_realtime.exceptions import ConsumerError
from django_realtime.types import Message

__all__ = ["ChannelApplication", "ReceivingLayer", "Worker"]

logger = logging.getLogger(__name__)

#: An ASGI application: ``await application(scope, receive, send)``.
ChannelApplication = Callable[
    [
        dict[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


class ReceivingLayer(Protocol):
    """The part of a channel layer a worker uses."""

    async def receive(self, channel: str, /) -> Message:
        """Return the next message sent to ``channel``, waiting for one."""
        ...

    async def send(self, channel: str, message: Message, /) -> None:
        """Send ``message`` to ``channel`` (to hand back unstarted messages)."""
        ...


class _Instance:
    """One running application instance, fed from its channel's queue.

    The queue belongs to the channel and outlives instances: when one fails,
    the next one gets the messages still waiting. A message counts as handled
    once the application asks for the next one or ends, which is what
    ``queue.join()`` waits for.
    """

    def __init__(
        self,
        application: ChannelApplication,
        channel: str,
        queue: asyncio.Queue[Message],
        slots: asyncio.Semaphore,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.slots = slots
        self.holding = False
        self.received = 0
        scope: dict[str, Any] = {"type": "channel", "channel": channel}
        self.task: asyncio.Task[None] = asyncio.create_task(
            self._run(application, scope),
            name=f"django_realtime worker instance for {channel!r}",
        )

    async def _run(
        self, application: ChannelApplication, scope: dict[str, Any]
    ) -> None:
        await application(scope, self._receive, self._send)

    async def _receive(self) -> Message:
        self._release()
        message = await self.queue.get()
        self.holding = True
        self.received += 1
        return message

    async def _send(self, message: Message) -> None:
        raise ConsumerError(
            f"An application in a 'channel' scope ({self.channel!r}) cannot send "
            f"ASGI messages; got {message.get('type')!r}. Reply through the "
            "channel layer instead (channel_layer.send or group_send)."
        )

    def _release(self) -> None:
        """Mark the message the application was handling as finished."""
        if self.holding:
            self.holding = False
            self.queue.task_done()
            self.slots.release()

    def end(self) -> None:
        """Log how the instance ended and release the message it held."""
        failed = not self.task.cancelled() and self.task.exception() is not None
        if failed:
            logger.error(
                "Application instance for channel %r failed while handling a "
                "message; %d waiting message(s) go to a new instance",
                self.channel,
                self.queue.qsize(),
                exc_info=self.task.exception(),
            )
        elif not self.task.cancelled():
            logger.warning(
                "Application instance for channel %r returned; channel "
                "applications should keep receiving until cancelled",
                self.channel,
            )
        self._release()


class Worker:
    """Run one application instance per channel, fed from a channel layer.

    Args:
        application: The ASGI application, usually
            :func:`django_realtime.routing.get_default_application`.
        channels: Names of the channels to receive on.
        channel_layer: The layer to receive from.
        shutdown_timeout: Seconds :meth:`run` waits, after :meth:`stop`, for
            messages already received to be handled.
        max_pending: Messages taken from one channel ahead of its instance
            asking for them. The default, 0, takes a message only when the
            instance is ready for it, so others wait in the layer, where
            another worker can take them.

    Raises:
        ValueError: ``channels`` is empty or ``channel_layer`` is ``None``.
    """

    def __init__(
        self,
        application: ChannelApplication,
        channels: Iterable[str],
        channel_layer: ReceivingLayer | None,
        *,
        shutdown_timeout: float = 5.0,
        max_pending: int = 0,
    ) -> None:
        self.application = application
        self.channels = list(dict.fromkeys(channels))
        if not self.channels:
            raise ValueError("Worker needs at least one channel name, got none.")
        if channel_layer is None:
            raise ValueError(
                "Worker needs a channel layer, got None; is CHANNEL_LAYERS set?"
            )
        if max_pending < 0:
            raise ValueError(f"max_pending must be 0 or more, got {max_pending}.")
        self.channel_layer = channel_layer
        self.shutdown_timeout = shutdown_timeout
        self.max_pending = max_pending
        self._instances: dict[str, _Instance] = {}
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        # Per channel: messages that may be taken from the layer and not
        # finished yet (the one being handled plus max_pending).
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stopping = asyncio.Event()
        self._running = False

    def stop(self) -> None:
        """Ask :meth:`run` to stop receiving and finish; safe to call twice.

        Call it from the worker's event loop (a signal handler installed with
        ``loop.add_signal_handler`` qualifies); from another thread use
        ``loop.call_soon_threadsafe(worker.stop)``.
        """
        self._stopping.set()

    async def run(self) -> None:
        """Receive and dispatch messages until :meth:`stop` is called.

        Raises:
            RuntimeError: The worker is already running.
            Exception: Whatever the channel layer raised while receiving,
                after the messages already received were handled.
        """
        if self._running:
            raise RuntimeError("This Worker is already running.")
        self._running = True
        logger.info("Worker receiving on %s", ", ".join(self.channels))
        listeners = [
            asyncio.create_task(
                self._listen(channel), name=f"django_realtime receive {channel!r}"
            )
            for channel in self.channels
        ]
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait(
                [stopping, *listeners], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            # A listener that ended by itself failed; what the others raise
            # once cancelled is the layer reacting to the cancellation (redis-py
            # may turn it into a TimeoutError), not a failure.
            ended = [listener for listener in listeners if listener.done()]
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            failures = [
                listener.exception()
                for listener in ended
                if not listener.cancelled() and listener.exception() is not None
            ]
            await self._shut_down()
            self._running = False
        if failures:
            raise failures[0]  # type: ignore[misc]

    async def _listen(self, channel: str) -> None:
        """Move messages from ``channel`` on the layer to its instance."""
        slots = self._slots.setdefault(channel, asyncio.Semaphore(1 + self.max_pending))
        while True:
            await slots.acquire()
            try:
                message = await self.channel_layer.receive(channel)
            except BaseException:
                slots.release()
                raise
            if not isinstance(message, dict) or not isinstance(
                message.get("type"), str
            ):
                slots.release()
                logger.error(
                    "Worker dropped a message on %r without a 'type' string: "
                    "expected a dict with 'type', got %r",
                    channel,
                    type(message).__name__
                    if not isinstance(message, dict)
                    else sorted(message),
                )
                continue
            logger.debug("Worker received %r on %r", message["type"], channel)
            self._ensure_instance(channel)
            # Never blocks: the slots keep the queue within max_pending + 1.
            self._queues[channel].put_nowait(message)

    def _ensure_instance(self, channel: str) -> None:
        """Start an application instance for ``channel`` unless one is running."""
        instance = self._instances.get(channel)
        if instance is not None and not instance.task.done():
            return
        queue = self._queues.setdefault(channel, asyncio.Queue())
        slots = self._slots.setdefault(channel, asyncio.Semaphore(1 + self.max_pending))
        instance = _Instance(self.application, channel, queue, slots)
        instance.task.add_done_callback(lambda _: self._instance_ended(instance))
        self._instances[channel] = instance

    def _instance_ended(self, instance: _Instance) -> None:
        """Report an ended instance; restart it if messages are waiting.

        An instance that failed before taking any message is not restarted
        here (it would fail again at once); the next message restarts it.
        """
        instance.end()
        if (
            not self._stopping.is_set()
            and self._instances.get(instance.channel) is instance
            and not instance.queue.empty()
            and instance.received
        ):
            self._ensure_instance(instance.channel)

    async def _shut_down(self) -> None:
        """Give instances ``shutdown_timeout`` to finish, then cancel them.

        Messages taken but not started go back to their channel.
        """
        instances = list(self._instances.values())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(self._drain(instance) for instance in instances)),
                timeout=self.shutdown_timeout,
            )
        interrupted = sum(instance.holding for instance in instances)
        for instance in instances:
            instance.task.cancel()
        await asyncio.gather(
            *(instance.task for instance in instances), return_exceptions=True
        )
        unstarted = [
            (channel, queue.get_nowait())
            for channel, queue in self._queues.items()
            for _ in range(queue.qsize())
        ]
        self._instances.clear()
        self._queues.clear()
        self._slots.clear()
        returned = await self._hand_back(unstarted)
        if interrupted:
            logger.warning(
                "Worker stopped after waiting %.1fs; %d message(s) were "
                "interrupted while being handled",
                self.shutdown_timeout,
                interrupted,
            )
        if returned:
            logger.info(
                "Worker sent %d received but unstarted message(s) back to "
                "their channel",
                returned,
            )
        if not interrupted and not unstarted:
            logger.info("Worker stopped; every received message was handled")

    async def _hand_back(self, messages: list[tuple[str, Message]]) -> int:
        """Send unstarted messages back to their channels; return how many went."""
        returned = 0
        for channel, message in messages:
            try:
                await self.channel_layer.send(channel, message)
            except Exception:
                logger.exception(
                    "Worker could not send an unstarted %r message back to %r; "
                    "it is lost",
                    message.get("type"),
                    channel,
                )
            else:
                returned += 1
        return returned

    @staticmethod
    async def _drain(instance: _Instance) -> None:
        """Wait until the instance's messages are handled or it ends."""
        joined = asyncio.create_task(instance.queue.join())
        try:
            await asyncio.wait(
                {joined, instance.task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            joined.cancel()
