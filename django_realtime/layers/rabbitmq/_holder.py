"""What a process does with the messages on its own queue.

A process's queue carries messages for its ``new_channel()`` channels, and
the group traffic of the memberships it holds: joins, leaves and group
messages, all in the order they were published. :class:`Holder` handles
them on the layer's I/O loop: membership changes at once (so a group
message is always judged against the joins and leaves published before
it), deliveries to this process's channels into the inbox, and forwards
to normal channels' queues one group message after another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from django_realtime.exceptions import ChannelLayerError
from django_realtime.layers._core import LayerStats
from django_realtime.layers._plain import decode
from django_realtime.layers.base import log_full_members
from django_realtime.layers.rabbitmq._inbox import Inbox
from django_realtime.layers.rabbitmq._link import Link, Outcome
from django_realtime.layers.rabbitmq._members import Binding, Memberships
from django_realtime.layers.rabbitmq._names import owner_of, sent_at

__all__ = ["Holder"]

logger = logging.getLogger("django_realtime.layers.rabbitmq")

Unbind = Callable[[str, str, str], Coroutine[Any, Any, None]]
Forward = Callable[[str, bytes], Coroutine[Any, Any, Outcome]]


class Holder:
    """Handle this process's queue: its channels and the memberships it holds.

    Args:
        process_id: This process's id in channel names.
        expiry: Seconds a message stays deliverable.
        capacity_of: Return a channel's capacity.
        stats: The layer's counters.
        link: The layer's connection.
        inbox: Where this process's receivers take messages.
        unbind: Remove this process's binding of one membership.
        forward: Publish a payload to a normal channel's queue.
    """

    def __init__(
        self,
        *,
        process_id: str,
        expiry: float,
        capacity_of: Callable[[str], int],
        stats: LayerStats,
        link: Link,
        inbox: Inbox,
        unbind: Unbind,
        forward: Forward,
    ) -> None:
        self.process_id = process_id
        self.members = Memberships()
        #: Whether this process's queue is consumed on the current connection.
        self.consuming = False
        self._expiry = expiry
        self._capacity_of = capacity_of
        self._stats = stats
        self._link = link
        self._inbox = inbox
        self._unbind = unbind
        self._forward = forward
        self._forwards: asyncio.Queue[tuple[str, bytes, list[str], list[str], str, int]]
        self._forwarder: asyncio.Task[None] | None = None

    def reset(self) -> None:
        """Forget memberships and the forwarding task: the layer was closed."""
        self.members.clear()
        self.consuming = False
        self._forwarder = None

    def forked(self, process_id: str, inbox: Inbox) -> None:
        """Hold nothing, as ``process_id``, in a forked child."""
        self.process_id = process_id
        self._inbox = inbox
        self.reset()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """Handle one message of this process's queue (no awaiting: order)."""
        headers = message.headers
        kind = headers.get("k")
        try:
            if kind == "send":
                self._deliver(message, headers)
            elif kind == "group":
                self._group(message, headers)
            elif kind == "join":
                self._join(message.routing_key or "", headers)
            elif kind == "leave":
                self._remove(
                    self.members.leave(message.routing_key or "", str(headers.get("c")))
                )
            else:
                logger.warning(
                    "Dropped a message of unknown kind %r on this process's queue.",
                    kind,
                )
        except Exception:
            logger.exception("Dropped a message this process could not handle.")

    # Internals

    def _deadline(self, headers: Any) -> float:
        return sent_at(headers) + self._expiry

    def _deliver(self, message: AbstractIncomingMessage, headers: Any) -> None:
        channel = str(headers.get("c"))
        body = decode(message.body)
        if not self._inbox.put(
            channel, self._deadline(headers), body, self._capacity_of(channel)
        ):
            self._stats.dropped_messages += 1
            logger.warning(
                "Channel %r is full (capacity %d): dropped a message (type %r).",
                channel,
                self._capacity_of(channel),
                body.get("type"),
            )

    def _join(self, group: str, headers: Any) -> None:
        channel, join = str(headers.get("c")), str(headers.get("j"))
        if headers.get("h") != self.process_id:
            # Another process holds this membership now.
            self._remove(self.members.leave(group, channel))
            return
        lasts = headers.get("x")
        seconds = lasts / 1000 if isinstance(lasts, int) else 86400.0
        until = time.monotonic() + seconds
        self._remove(self.members.join(group, channel, join, until))

    def _remove(self, bindings: list[Binding]) -> None:
        for binding in bindings:
            self._link.spawn(self._unbind(binding.group, binding.channel, binding.join))

    def _group(self, message: AbstractIncomingMessage, headers: Any) -> None:
        group = message.routing_key or ""
        live, expired = self.members.live(group, time.monotonic())
        if expired:
            self._stats.expired_memberships += len(expired)
            self._remove(expired)
        if not live:
            return
        deadline = self._deadline(headers)
        body = decode(message.body)
        full: list[str] = []
        normal: list[str] = []
        for channel in live:
            if owner_of(channel) is None:
                normal.append(channel)
            elif self._inbox.put(
                channel, deadline, dict(body), self._capacity_of(channel)
            ):
                self._stats.sent += 1
            else:
                full.append(channel)
        kind = str(body.get("type"))
        if not normal:
            self._report(group, full, len(live), kind)
            return
        if self._forwarder is None or self._forwarder.done():
            self._forwards = asyncio.Queue()
            self._forwarder = self._link.spawn(self._forward_all())
        self._forwards.put_nowait((group, message.body, normal, full, kind, len(live)))

    async def _forward_all(self) -> None:
        """Forward group messages to normal channels, one message at a time."""
        while True:
            group, payload, channels, full, kind, members = await self._forwards.get()
            results = await asyncio.gather(
                *(self._forward(channel, payload) for channel in channels),
                return_exceptions=True,
            )
            failed = 0
            for channel, result in zip(channels, results, strict=True):
                if result is Outcome.FULL:
                    full.append(channel)
                elif isinstance(result, ChannelLayerError):
                    failed += 1
                elif isinstance(result, BaseException):
                    logger.error("Forwarding to %r failed.", channel, exc_info=result)
                    failed += 1
                else:
                    self._stats.sent += 1
            if failed:
                logger.warning(
                    "group_send to %r: could not forward the message to %d "
                    "normal channels: the broker could not be reached.",
                    group,
                    failed,
                )
            self._report(group, full, members, kind)

    def _report(self, group: str, full: list[str], members: int, kind: str) -> None:
        if not full:
            return
        self._stats.dropped_messages += len(full)
        log_full_members(logger, group, full, members, kind)
