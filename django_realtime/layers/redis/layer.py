"""A Redis channel layer built for fan-out: one PUBLISH per group send.

Group memberships of process-local channels stay in the process; the process
subscribes once per group and fans a group message out in memory, so a group
send costs one Redis round trip whatever the group's size, and a join costs
none unless it is the process's first member of the group. Normal channels
(read by workers) are Redis lists with queue semantics.

The layer is split by reason to change: the rules and wire formats
(:mod:`._core`, no I/O), the options (:mod:`._config`), the lists of
normal channels (:mod:`._queues`), this process's channels
(:mod:`._local`) and what reaches them over pub/sub (:mod:`._topics`), the
pub/sub connection (:mod:`._pubsub`), the connections of one event loop
(:mod:`._connections`) and the loop they belong to (:mod:`._home`), and
the reports of lost messages (:mod:`._reports`); this module routes each
call to them.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django_realtime.exceptions import (
    ChannelLayerError,
    InvalidChannelName,
)
from django_realtime.layers.base import BaseChannelLayer, CapacityPattern
from django_realtime.layers.redis._config import (
    client_name,
    describe,
    import_serialiser,
    one_host,
    seconds,
)
from django_realtime.layers.redis._connections import Connections
from django_realtime.layers.redis._core import (
    PROCESS_ID_LENGTH,
    Names,
    RedisLayerStats,
    Subscriptions,
    member_value,
    pack_direct,
    pack_entry,
    process_of,
)
from django_realtime.layers.redis._home import HomeLoop
from django_realtime.layers.redis._local import LocalChannels
from django_realtime.layers.redis._queues import Queues
from django_realtime.layers.redis._reports import DropReports
from django_realtime.layers.redis._topics import Topics

__all__ = ["RedisChannelLayer", "RedisLayerStats"]

logger = logging.getLogger(__name__)


class RedisChannelLayer(BaseChannelLayer):
    """Carry messages between processes through one Redis server.

    Configure it in ``CHANNEL_LAYERS``::

        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
                "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
            },
        }

    Delivery semantics (the Redis layer topic guide explains them):

    - Groups and process-local channels (``new_channel()`` names) travel over
      Redis pub/sub: at most once. Messages published while this process's
      pub/sub connection is down are lost; the layer reconnects with backoff,
      subscribes again and logs a warning with the time window exposed.
    - Normal channels (no ``!``, as read by ``runworker``) are Redis lists:
      a message waits, up to ``expiry``, for a receiver, and each message
      goes to one receiver.

    Nothing is dropped silently: a full channel of this process raises
    :exc:`~django_realtime.exceptions.ChannelFull` on a send from this
    process, as a full normal channel does on any send; a message from
    another process to a full channel, and group deliveries to full members,
    are dropped, counted in :attr:`stats` and logged as warnings (at most one
    per channel or group per second, with the counts).

    Each message is encoded with msgpack once per send and decoded once per
    receiving process. Members of a group in one process share the decoded
    message; each :meth:`receive` returns its own shallow copy, so nested
    values must be treated as read-only.

    The layer belongs to one event loop at a time (its *home*): calls made on
    another thread's loop run on the home loop while it runs; once the home
    loop has ended, the next loop to call takes over and subscribes again.

    Args:
        hosts: A list of one Redis server: a URL string, or a dict with an
            ``"address"`` URL and keyword arguments for redis-py's
            ``Redis.from_url``. Sharding over several servers is not
            supported.
        prefix: Prefix of every Redis key and pub/sub topic of this layer.
        expiry: Seconds a message waits to be received before it is discarded.
        group_expiry: Seconds a group membership lasts; ``group_add`` again
            to renew it.
        capacity: Messages a channel holds before it is full.
        channel_capacity: Capacities for channels matching glob strings or
            compiled regular expressions, first match wins.
        subscribe_timeout: Seconds ``group_add`` and ``new_channel`` wait for
            Redis to confirm a subscription.
        health_check_interval: Seconds of silence on the pub/sub connection
            after which it is pinged; no answer within as long again counts
            as a lost connection.
        idle_timeout: Seconds a command connection (``BLPOP`` receives
            included) may stay unused before it is closed. The most recently
            used one stays open: once a burst of concurrent calls is over,
            the process is back to one command connection and its pub/sub
            connection.

    Raises:
        ImportError: redis-py or msgpack is not installed.

    Attributes:
        process_id: The id in this layer's ``new_channel()`` names.
        stats: A :class:`RedisLayerStats` with message counters.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        hosts: Sequence[str | Mapping[str, Any]] | None = None,
        prefix: str = "realtime",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        *,
        subscribe_timeout: float = 10.0,
        health_check_interval: float = 15.0,
        idle_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        self.group_expiry = seconds(group_expiry, "group_expiry")
        self.subscribe_timeout = seconds(subscribe_timeout, "subscribe_timeout")
        self.health_check_interval = seconds(
            health_check_interval, "health_check_interval"
        )
        self.idle_timeout = seconds(idle_timeout, "idle_timeout")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}.")
        self.prefix = prefix
        self._url, self._redis_kwargs = one_host(hosts)
        self._where = describe(self._url)
        self._unpackb, self._packb = import_serialiser()

        self.process_id = secrets.token_hex(PROCESS_ID_LENGTH // 2)
        self._pid_bytes = self.process_id.encode()
        self._names = Names(prefix)
        self._process_topic = self._names.process_topic(self.process_id)
        self._expiry_ms = math.ceil(expiry * 1000)
        self._local = LocalChannels(
            expiry=expiry, group_expiry=self.group_expiry, capacity_of=self.get_capacity
        )
        self.stats = RedisLayerStats(local=self._local.stats)
        self._reports = DropReports(self.stats, expiry)
        self._topics = Topics(
            local=self._local,
            reports=self._reports,
            decode=self._unpackb,
            process_topic=self._process_topic,
            process_id=self.process_id,
        )
        self._queues = Queues(
            names=self._names,
            reports=self._reports,
            decode=self._unpackb,
            expiry=expiry,
            expiry_ms=self._expiry_ms,
        )
        self._counter = itertools.count(1)
        self._table = Subscriptions()
        self._home = HomeLoop(self._connect)

    def __repr__(self) -> str:
        return f"<RedisChannelLayer {self._where} prefix={self.prefix!r}>"

    # Channels

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``.

        Raises:
            ChannelFull: The channel is a normal channel or one of this
                process's, and holds its capacity of messages.
            InvalidChannelName: ``channel`` is not a valid channel name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value msgpack cannot encode.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        self.require_valid_message(message)
        self.require_valid_channel_name(channel)
        process = self._process(channel)
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self.send(channel, message))
        payload = self._encode(message)
        if process == self.process_id:
            self._local.push(channel, self._unpackb(payload))
        elif process is not None:
            topic = self._names.process_topic(process)
            receivers = await conns.redis.publish(topic, pack_direct(channel, payload))
            self.stats.published += 1
            if not receivers:
                self.stats.undeliverable += 1
                logger.debug("send to %r: no process receives on it.", channel)
        else:
            await self._queues.push(conns, channel, payload, self.get_capacity(channel))

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel`` and return it.

        Several receivers may wait on one channel; each message goes to one
        of them. Cancelling a waiting receive loses no message.

        Raises:
            InvalidChannelName: ``channel`` is not a valid channel name.
            ChannelLayerError: ``channel`` belongs to another process.
        """
        self.require_valid_channel_name(channel)
        process = self._process(channel)
        if process is not None and process != self.process_id:
            raise ChannelLayerError(
                f"Cannot receive on {channel!r}: it was made by another process "
                "(or another layer instance); only its maker receives on it."
            )
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self.receive(channel))
        if process is not None:
            return await self._local.receive(channel)
        return await self._queues.pop(conns, channel)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new channel name that only this process receives on.

        The name is ``prefix``, :attr:`process_id`, ``!`` and a counter, for
        example ``"specific.3f9a1c0e7b2d4a65!1"``. The first call subscribes
        this process's topic and waits for Redis to confirm it.

        Raises:
            InvalidChannelName: ``prefix`` makes an invalid name.
            redis.exceptions.ConnectionError: The subscription was not
                confirmed within ``subscribe_timeout``.
        """
        name = f"{prefix}{self.process_id}!{next(self._counter)}"
        self.require_valid_channel_name(name)
        if not self._table.is_active(self._process_topic):
            await self._subscribe_process_topic()
        return name

    # Groups

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership.

        A channel of this process is remembered here; the first one in a
        group subscribes this process to the group (concurrent first joins
        share one ``SUBSCRIBE``), and the call returns once Redis confirms
        it. Any other channel is stored in Redis.

        Raises:
            InvalidChannelName: ``group`` or ``channel`` is invalid.
            redis.exceptions.ConnectionError: The subscription was not
                confirmed within ``subscribe_timeout``; the membership is
                not kept.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        process = self._process(channel)
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self.group_add(group, channel))
        if process != self.process_id:
            key = self._names.group_key(group)
            joined = member_value(time.time(), self.get_capacity(channel))
            async with conns.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, channel, joined)
                pipe.expire(key, math.ceil(self.group_expiry))
                await pipe.execute()
            return
        self._local.group_add(group, channel)
        topic = self._names.group_topic(group)
        if self._table.is_active(topic):
            return
        self._topics.add_group(topic, group)
        try:
            await conns.subscriber.subscribe(topic)
        except BaseException:
            self._local.group_discard(group, channel)
            if not self._local.has_members(group):
                await self._unsubscribe(conns, [topic])
            raise

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; do nothing if it is not in it.

        The last channel of this process to leave a group unsubscribes the
        process from it.

        Raises:
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        process = self._process(channel)
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self.group_discard(group, channel))
        if process == self.process_id and self._local.group_discard(group, channel):
            if not self._local.has_members(group):
                await self._unsubscribe(conns, [self._names.group_topic(group)])
            return
        # Not a membership kept here: one stored in Redis, if any.
        await conns.redis.hdel(self._names.group_key(group), channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``.

        One Redis round trip, whatever the group's size: a script that
        pushes to the members stored in Redis and publishes once to the
        group's topic. Members in this process get the message at once;
        other processes fan it out on arrival. Full members are skipped,
        counted and logged; this does not raise for them.

        Raises:
            InvalidChannelName: ``group`` is not a valid group name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value msgpack cannot encode.
            redis.exceptions.ConnectionError: Redis cannot be reached.
        """
        self.require_valid_message(message)
        self.require_valid_group_name(group)
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self.group_send(group, message))
        payload = self._encode(message)
        topic = self._names.group_topic(group)
        now = time.time()
        result = await conns.group_send_script(
            keys=[self._names.group_key(group)],
            args=[
                topic,
                self._pid_bytes,
                payload,
                now,
                self.group_expiry,
                pack_entry(now + self.expiry, payload),
                self._expiry_ms,
                self._names.queue_prefix,
                self._names.process_topic_prefix,
            ],
        )
        self.stats.published += 1
        members, _, expired, *full = result
        self._reports.expired(f"worker channels of group {group!r}", expired)
        if full:
            self.stats.queue_dropped += len(full)
            self._reports.full_members(
                group, len(full), members, message, "worker channels"
            )
        if self._table.is_wanted(topic):
            self._topics.fan_out(group, self._unpackb(payload))

    # Flush extension and cleanup

    async def flush(self) -> None:
        """Delete this prefix's keys in Redis and this process's groups.

        Queued messages on normal channels, the group members stored in
        Redis, and this process's queued messages and memberships are
        dropped. Other processes keep their own memberships: flush is meant
        for tests.
        """
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self.flush())
        redis = conns.redis
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=self._names.key_pattern(), count=500):
            batch.append(key)
            if len(batch) >= 500:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
        self._local.flush()
        await self._unsubscribe(
            conns,
            [topic for topic in self._table.wanted if topic != self._process_topic],
        )

    def discard_channel(self, channel: str) -> None:
        """Drop the messages queued on ``channel``: its consumer has ended.

        Only this process's channels have a queue here; for others, nothing
        happens.
        """
        self._local.discard(channel)

    async def close(self) -> None:
        """Close this layer's Redis connections.

        Queued messages and memberships of this process are kept; the next
        call connects and subscribes again.
        """
        await self._home.close()

    # Internals

    def _connect(self) -> Connections:
        """Open the connections of a new home loop; resubscribe if needed."""
        conns = Connections(
            url=self._url,
            redis_kwargs=self._redis_kwargs,
            client_name=client_name(self.prefix, self.process_id),
            table=self._table,
            where=self._where,
            on_message=self._topics.on_message,
            on_tick=self._tick,
            stats=self.stats,
            subscribe_timeout=self.subscribe_timeout,
            health_check_interval=self.health_check_interval,
            expiry_ms=self._expiry_ms,
            idle_timeout=self.idle_timeout,
        )
        if self._table.wanted:
            conns.subscriber.start()
        return conns

    # Internals: pub/sub

    async def _subscribe_process_topic(self) -> None:
        conns = self._home.here()
        if conns is None and (conns := await self._home.settle()) is None:
            return await self._home.delegate(self._subscribe_process_topic())
        await conns.subscriber.subscribe(self._process_topic)

    async def _unsubscribe(self, conns: Connections, topics: list[str]) -> None:
        self._topics.forget(topics)
        await conns.subscriber.unsubscribe(topics)

    async def _tick(self) -> None:
        """Report overdue drop counts; leave groups whose members all expired."""
        self._reports.overdue()
        empty = self._topics.without_members()
        conns = self._home.connections
        if empty and conns is not None:
            await self._unsubscribe(conns, empty)

    # Internals: helpers

    def _process(self, channel: str) -> str | None:
        bang = channel.find("!")
        if bang == -1:
            return None
        # This process's own channels, on every receive: skip the regex.
        if bang >= PROCESS_ID_LENGTH and channel.startswith(
            self.process_id, bang - PROCESS_ID_LENGTH
        ):
            return self.process_id
        try:
            return process_of(channel)
        except ValueError as error:
            raise InvalidChannelName(str(error)) from None

    def _encode(self, message: dict[str, Any]) -> bytes:
        try:
            payload: bytes = self._packb(message)
        except (TypeError, ValueError, OverflowError) as error:
            raise TypeError(
                f"Channel layer messages must be msgpack-serialisable: {error} "
                f"(message type {message.get('type')!r})."
            ) from error
        return payload
