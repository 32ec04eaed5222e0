"""Consumers of the normal channels this process receives from.

A receive on a normal channel starts a consumer of its queue (prefetch 1:
the broker hands this process one message at a time, held for it until a
receive takes it). A consumer stays while receives keep coming; once no
receive has waited on the channel for ``linger`` seconds, it is cancelled
and a message it held goes back to the queue, for another process (a
worker busy with a long job does not keep the next one from the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from django_realtime.layers._plain import decode
from django_realtime.layers.rabbitmq._inbox import Inbox
from django_realtime.layers.rabbitmq._link import Link
from django_realtime.layers.rabbitmq._names import sent_at

__all__ = ["LINGER", "Readers"]

logger = logging.getLogger("django_realtime.layers.rabbitmq")

#: Seconds a normal channel's consumer outlives the last receive on it.
LINGER = 5.0


class Readers:
    """Start, keep and stop the consumers of normal channels (on the link's loop).

    Args:
        link: The layer's connection.
        inbox: Where receivers take messages.
        declare: Declare a normal channel's queue; return its name.
        expiry: Seconds a message stays deliverable.
        linger: Seconds a consumer outlives the last receive.
    """

    def __init__(
        self,
        *,
        link: Link,
        inbox: Inbox,
        declare: Callable[[str], Awaitable[str]],
        expiry: float,
        linger: float = LINGER,
    ) -> None:
        self.inbox = inbox
        self._link = link
        self._declare = declare
        self._expiry = expiry
        self._linger = linger
        # channel -> consumer tag, on the current connection.
        self._tags: dict[str, str] = {}
        self._queues: dict[str, str] = {}
        self._idle: dict[str, asyncio.TimerHandle] = {}
        self._lock: asyncio.Lock | None = None

    async def want(self, channel: str) -> None:
        """Consume ``channel`` if not yet: a receive is about to wait on it."""
        self._queues.setdefault(channel, "")
        self._link.wanted = True
        await self._link.channels()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if channel not in self._tags:
                await self._start(channel)

    def done(self, channel: str) -> None:
        """Note that a receive on ``channel`` ended (returned or cancelled)."""
        timer = self._idle.pop(channel, None)
        if timer is not None:
            timer.cancel()
        self._idle[channel] = asyncio.get_running_loop().call_later(
            self._linger, self._maybe_stop, channel
        )

    async def restore(self) -> None:
        """Start the consumers again on a new connection."""
        self._tags.clear()
        for channel in sorted(self._queues):
            await self._start(channel)

    def lost(self) -> None:
        """Forget the consumers: the connection is gone."""
        self._tags.clear()

    def reset(self) -> None:
        """Forget everything: the layer was closed, or the process forked."""
        for timer in self._idle.values():
            timer.cancel()
        self._idle.clear()
        self._tags.clear()
        self._queues.clear()
        self._lock = None

    # Internals

    async def _start(self, channel: str) -> None:
        queue = self._queues[channel] = await self._declare(channel)
        expiry, link = self._expiry, self._link

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                body = decode(message.body)
            except Exception:
                logger.exception("Dropped an undecodable message on %s.", channel)
                link.spawn(message.reject(requeue=False))
                return
            deadline = sent_at(message.headers) + expiry

            def settle(requeue: bool) -> None:
                settling = message.nack(requeue=True) if requeue else message.ack()
                link.post_call(lambda: link.spawn(settling))

            self.inbox.put(channel, deadline, body, ack=settle)

        self._tags[channel] = await self._link.consume(queue, on_message, no_ack=False)

    def _maybe_stop(self, channel: str) -> None:
        self._idle.pop(channel, None)
        if self.inbox.waiting(channel):
            return
        tag = self._tags.pop(channel, None)
        queue = self._queues.pop(channel, None)
        if tag is not None and queue:
            self._link.spawn(self._stop(channel, queue, tag))

    async def _stop(self, channel: str, queue: str, tag: str) -> None:
        with contextlib.suppress(Exception):
            await self._link.cancel(queue, tag)
        given = self.inbox.give_back(channel)
        if given:
            logger.debug(
                "Gave %d held messages of %s back to the queue.", given, channel
            )
