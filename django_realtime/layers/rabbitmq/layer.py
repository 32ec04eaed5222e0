"""The RabbitMQ channel layer: channels as queues, groups as bindings.

The broker side is named in :mod:`._names`; the connection and its thread
are a :class:`~._link.Link`; the memberships this process holds are a
:class:`~._members.Memberships`, and what reached the process waits in an
:class:`~._inbox.Inbox`. What arrives on this process's queue is handled
by :mod:`._holder`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from django_realtime.exceptions import ChannelFull
from django_realtime.layers._core import LayerStats
from django_realtime.layers._plain import encoder
from django_realtime.layers.base import (
    BaseChannelLayer,
    CapacityPattern,
    require_seconds,
)
from django_realtime.layers.rabbitmq import _names
from django_realtime.layers.rabbitmq._holder import Holder
from django_realtime.layers.rabbitmq._inbox import Inbox
from django_realtime.layers.rabbitmq._link import Link, Outcome
from django_realtime.layers.rabbitmq._names import DEFAULT_URL, broker_address
from django_realtime.layers.rabbitmq._readers import Readers
from django_realtime.layers.rabbitmq._topology import (
    PROCESS_QUEUE_ARGUMENTS,
    Topology,
    channel_arguments,
)

__all__ = ["DEFAULT_URL", "RabbitMQChannelLayer"]

encode = encoder("RabbitMQChannelLayer")

logger = logging.getLogger("django_realtime.layers.rabbitmq")


class RabbitMQChannelLayer(BaseChannelLayer):
    """Carry messages between processes, on any machines, through RabbitMQ.

    Configure it in ``CHANNEL_LAYERS``::

        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "django_realtime.layers.rabbitmq.RabbitMQChannelLayer",
                "CONFIG": {"url": "amqp://guest:guest@127.0.0.1:5672/"},
            },
        }

    How it maps onto the broker:

    - A normal channel (a name without ``!``, read by any process, such as
      a ``runworker`` channel) is a queue of its own, declared with a
      length limit of the channel's capacity (``x-overflow:
      reject-publish``) and a message time to live of ``expiry``. A send
      returns once the broker has confirmed the message; a send it refused
      for the limit raises :exc:`~django_realtime.exceptions.ChannelFull`.
    - Each process has one queue for its ``new_channel()`` channels; the
      name of such a channel carries its process's id, so any process can
      send to it. The owning process hands each message to its channel,
      holding at most the channel's capacity: beyond it the message is
      dropped with a warning (the sender is not told).
    - A group is a routing key on one direct exchange. Each membership is
      held by one process (the owner of a process-local channel, or the
      process that added a normal channel last), whose queue is bound to
      the group once per membership; a group message reaches each holder
      once, and the holder hands it to its live members, forwarding it to
      the queues of normal channels. Memberships expire after
      ``group_expiry`` (bindings do not: holders remove them). Members that
      were full are skipped and reported by a warning in the holder's
      process, with counts.

    When the broker restarts, operations raise
    :exc:`~django_realtime.exceptions.ChannelLayerError` until it is back
    (a send that raised was not confirmed: treat it as not sent); the layer
    reconnects on its own and declares its queue, bindings and consumers
    again. Messages queued in the broker when it stopped are lost.

    Messages may hold plain data only (dicts, lists, tuples, sets, strings,
    bytes, numbers, booleans, ``None``); anything else raises
    :exc:`TypeError` on send.

    The layer may be used from any event loop and thread (``async_to_sync``
    from a view or the shell): its I/O runs on one thread and one
    connection per layer and process, started on first use and ended by
    :meth:`close`.

    Args:
        url: The broker's AMQP URL.
        prefix: Put before every queue and exchange name, so that projects
            sharing a broker (or a virtual host) do not meet.
        expiry: Seconds a message waits to be received before it is discarded.
        group_expiry: Seconds a group membership lasts; ``group_add`` again
            to renew it.
        capacity: Messages a channel holds before it is full.
        channel_capacity: Capacities for channels matching glob strings or
            compiled regular expressions, first match wins.
        timeout: Seconds to wait for the broker to connect or to answer.

    Attributes:
        process_id: The id in this layer's ``new_channel()`` names.
        stats: A :class:`~django_realtime.layers.LayerStats` with this
            process's counters.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        url: str = DEFAULT_URL,
        prefix: str = "realtime.",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        self.where = broker_address(url)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {prefix!r}.")
        self.url = url
        self.prefix = prefix
        self.group_expiry = require_seconds(group_expiry, "group_expiry")
        self.timeout = require_seconds(timeout, "timeout")
        self.process_id = secrets.token_hex(_names.PROCESS_ID_LENGTH // 2)
        self.stats = LayerStats()
        self._inbox = Inbox(self.stats)
        self._counter = itertools.count(1)
        self._exchange = _names.groups_exchange(prefix)
        self._link = Link(
            url,
            where=self.where,
            name=f"django_realtime {self._process_queue}",
            timeout=self.timeout,
            on_connect=self._on_connect,
            on_lost=self._on_lost,
            on_fork=self._forked,
        )
        self._topology = Topology(self._link, self._exchange)
        self._readers = Readers(
            link=self._link,
            inbox=self._inbox,
            declare=self._declare_channel,
            expiry=self.expiry,
        )
        self._holder = Holder(
            process_id=self.process_id,
            expiry=self.expiry,
            capacity_of=self.get_capacity,
            stats=self.stats,
            link=self._link,
            inbox=self._inbox,
            unbind=self.unbind,
            forward=self.publish_to_channel,
        )
        # On the link's loop only:
        self._declared: set[str] = set()
        self._listening = False
        self._setup: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"<RabbitMQChannelLayer {self.where} prefix={self.prefix!r}>"

    @property
    def _process_queue(self) -> str:
        return _names.process_queue(self.prefix, self.process_id)

    # Channels

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``; return once the broker has it.

        Raises:
            ChannelFull: The channel's queue holds its capacity of messages.
            ChannelLayerError: The broker cannot be reached, or the
                connection failed before it confirmed the message.
            InvalidChannelName: ``channel`` is not a valid channel name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value that is not plain data.
        """
        self.require_valid_message(message)
        self.require_valid_channel_name(channel)
        payload = encode(message)
        owner = _names.owner_of(channel)
        if owner is not None:
            outcome = await self._link.call(
                self._link.publish(
                    "",
                    _names.process_queue(self.prefix, owner),
                    payload,
                    {"k": "send", "c": channel, "t": _names.now_ms()},
                    expiration=self.expiry,
                )
            )
            if outcome is Outcome.UNROUTABLE:
                logger.debug("Dropped a message to %s: its process has ended.", channel)
                return
        else:
            outcome = await self._link.call(self.publish_to_channel(channel, payload))
            if outcome is Outcome.FULL:
                self.stats.rejected += 1
                raise ChannelFull(
                    f"Channel {channel!r} is full: RabbitMQ refused the message "
                    f"(its capacity is {self.get_capacity(channel)})."
                )
        self.stats.sent += 1

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel`` and return it.

        Several receivers may wait on one channel; each message goes to one
        of them. Cancelling a waiting receive loses no message.

        Raises:
            ChannelLayerError: The broker cannot be reached to start
                consuming the channel.
            InvalidChannelName: ``channel`` is not a valid channel name.
        """
        self.require_valid_channel_name(channel)
        if _names.owner_of(channel) is not None:
            await self._link.call(self._listen())
            return await self._take(channel)
        await self._link.call(self._readers.want(channel))
        try:
            return await self._take(channel)
        finally:
            self._link.post_call(functools.partial(self._readers.done, channel))

    async def _take(self, channel: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            message = self._inbox.take_or_wait(channel, time.time(), waiter)
            if message is not None:
                return message
            try:
                await waiter
            except asyncio.CancelledError:
                self._inbox.forget(channel, waiter)
                raise

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new channel name that only this process receives from.

        The name is ``prefix``, ``rmq.``, this layer's process id, ``!`` and
        a counter, for example ``"specific.rmq.3f9a1c0e7b2d!1"``.

        Raises:
            ChannelLayerError: The broker cannot be reached to declare this
                process's queue.
            InvalidChannelName: The resulting name is invalid.
        """
        self._link.adopt()
        name = _names.local_name(prefix, self.process_id, next(self._counter))
        self.require_valid_channel_name(name)
        await self._link.call(self._listen())
        return name

    # Groups

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership.

        Raises:
            ChannelLayerError: The broker cannot be reached.
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._link.adopt()
        holder = _names.owner_of(channel) or self.process_id
        await self._link.call(self._group_add(group, channel, holder))

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; do nothing if it is not in it.

        Raises:
            ChannelLayerError: The broker cannot be reached.
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._link.call(
            self._link.publish(self._exchange, group, b"", {"k": "leave", "c": channel})
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``.

        Returns once the broker has the message for every process holding
        members of the group. Members that are full are skipped by their
        holding process, which logs one warning with the counts and adds
        them to its ``stats.dropped_messages``.

        Raises:
            ChannelLayerError: The broker cannot be reached, or the
                connection failed before it confirmed the message.
            InvalidChannelName: ``group`` is not a valid group name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value that is not plain data.
        """
        self.require_valid_message(message)
        self.require_valid_group_name(group)
        payload = encode(message)
        await self._link.call(
            self._link.publish(
                self._exchange,
                group,
                payload,
                {"k": "group", "t": _names.now_ms()},
                expiration=self.expiry,
            )
        )

    # Flush extension

    async def flush(self) -> None:
        """Drop every group, and the messages of channels this process used.

        The groups exchange is deleted with all its bindings (every
        process's memberships) and declared again; the queues of normal
        channels this process has sent to or received from, and its own
        queue, are purged.
        """
        await self._link.call(self._flush())
        self._inbox.clear()

    def discard_channel(self, channel: str) -> None:
        """Drop the messages waiting on ``channel``: its consumer has ended."""
        self.stats.discarded_messages += self._inbox.discard(channel)

    async def close(self) -> None:
        """Close the connection and end the layer's thread.

        This process's queue is deleted by the broker once unused, with its
        bindings. The layer may be used again afterwards.
        """
        await self._link.close()
        self._declared.clear()
        self._readers.reset()
        self._listening = False
        self._setup = None
        self._holder.reset()

    # On the link's loop

    async def publish_to_channel(self, channel: str, payload: bytes) -> Outcome:
        """Publish ``payload`` to a normal channel's queue, declared if needed."""
        queue = _names.channel_queue(self.prefix, channel)
        for _ in range(2):
            if queue not in self._declared:
                await self._declare_channel(channel)
            outcome = await self._link.publish(
                "", queue, payload, {"k": "send", "t": _names.now_ms()}
            )
            if outcome is not Outcome.UNROUTABLE:
                return outcome
            # The queue expired unused: declare it again.
            self._declared.discard(queue)
        return outcome

    async def _declare_channel(self, channel: str) -> str:
        queue = _names.channel_queue(self.prefix, channel)
        arguments = channel_arguments(self.get_capacity(channel), self.expiry)
        await self._topology.declare_queue(queue, arguments)
        self._declared.add(queue)
        return queue

    async def _listen(self) -> None:
        """Declare and consume this process's queue, once per connection."""
        if not self._listening:
            self._listening = True
            self._link.wanted = True
        await self._link.channels()
        async with self._setup_lock():
            if not self._holder.consuming:
                await self._start_process_queue()

    async def _start_process_queue(self) -> None:
        queue = self._process_queue
        await self._topology.declare_queue(queue, PROCESS_QUEUE_ARGUMENTS)
        for binding in self._holder.members.bindings():
            await self._topology.bind(
                queue, binding.group, binding.channel, binding.join
            )
        await self._link.consume(queue, self._holder.on_message, no_ack=True)
        self._holder.consuming = True

    async def _group_add(self, group: str, channel: str, holder: str) -> None:
        if holder == self.process_id:
            await self._listen()
        join = uuid.uuid4().hex[:12]
        queue = _names.process_queue(self.prefix, holder)
        if not await self._topology.bind(queue, group, channel, join):
            logger.debug("group_add(%r, %r): its process has ended.", group, channel)
            return
        await self._link.publish(
            self._exchange,
            group,
            b"",
            {
                "k": "join",
                "c": channel,
                "j": join,
                "h": holder,
                "x": round(self.group_expiry * 1000),
            },
        )

    async def unbind(self, group: str, channel: str, join: str) -> None:
        """Remove this process's binding of one membership."""
        await self._topology.unbind(self._process_queue, group, channel, join)

    async def _flush(self) -> None:
        queues = list(self._declared)
        if self._holder.consuming:
            queues.append(self._process_queue)
        await self._topology.delete_exchange()
        self._holder.members.clear()
        for queue in queues:
            await self._topology.purge(queue)
        await self._topology.declare_exchange()

    async def _on_connect(self) -> None:
        self._declared.clear()
        self._holder.consuming = False
        await self._topology.declare_exchange()
        if self._listening:
            await self._start_process_queue()
        await self._readers.restore()

    def _on_lost(self) -> None:
        self._declared.clear()
        self._readers.lost()
        self._holder.consuming = False
        self._inbox.drop_unacked()

    def _forked(self) -> None:
        """Start afresh in a child forked after the layer was used.

        The child takes a new process id (its channels and memberships are
        its own) and an empty inbox; the parent's stay the parent's.
        """
        self.process_id = secrets.token_hex(_names.PROCESS_ID_LENGTH // 2)
        self._link.name = f"django_realtime {self._process_queue}"
        self._inbox = Inbox(self.stats)
        self._holder.forked(self.process_id, self._inbox)
        self._readers.reset()
        self._readers.inbox = self._inbox
        self._declared.clear()
        self._listening = False
        self._setup = None

    def _setup_lock(self) -> asyncio.Lock:
        if self._setup is None:
            self._setup = asyncio.Lock()
        return self._setup
