"""A Redis channel layer built for fan-out: one PUBLISH per group send.

Group memberships of process-local channels stay in the process; the process
subscribes once per group and fans a group message out in memory, so a group
send costs one Redis round trip whatever the group's size, and a join costs
none unless it is the process's first member of the group. Normal channels
(read by workers) are Redis lists with queue semantics.

The layer is split by reason to change: the rules and wire formats
(:mod:`._redis_core`, no I/O), this process's channels
(:mod:`._redis_local`), the pub/sub connection (:mod:`._redis_pubsub`) and
the connections of one event loop (:mod:`._redis_connections`); this module
routes each call to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from django_realtime.exceptions import (
    ChannelFull,
    ChannelLayerError,
    InvalidChannelName,
)
from django_realtime.layers.base import BaseChannelLayer, CapacityPattern
from django_realtime.layers.redis._connections import Connections
from django_realtime.layers.redis._core import (
    ENTRY_HEADER,
    ORIGIN_LENGTH,
    PROCESS_ID_LENGTH,
    Names,
    RedisLayerStats,
    ReportGate,
    Subscriptions,
    member_value,
    pack_direct,
    pack_entry,
    process_of,
    split_direct,
    unpack_deadline,
)
from django_realtime.layers.redis._local import LocalChannels

__all__ = ["RedisChannelLayer", "RedisLayerStats"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_INSTALL = "python -m pip install 'django-realtime[redis]'"
_DEFAULT_HOST = "redis://127.0.0.1:6379"
_CLIENT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


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
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        self.group_expiry = _seconds(group_expiry, "group_expiry")
        self.subscribe_timeout = _seconds(subscribe_timeout, "subscribe_timeout")
        self.health_check_interval = _seconds(
            health_check_interval, "health_check_interval"
        )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}.")
        self.prefix = prefix
        self._url, self._redis_kwargs = _one_host(hosts)
        self._where = _describe(self._url)
        self._unpackb, self._packb = _import_serialiser()

        self.process_id = secrets.token_hex(PROCESS_ID_LENGTH // 2)
        self._pid_bytes = self.process_id.encode()
        self._names = Names(prefix)
        self._process_topic = self._names.process_topic(self.process_id)
        self._process_topic_bytes = self._process_topic.encode()
        self._expiry_ms = math.ceil(expiry * 1000)
        self._local = LocalChannels(
            expiry=expiry, group_expiry=self.group_expiry, capacity_of=self.get_capacity
        )
        self.stats = RedisLayerStats(local=self._local.stats)
        self._gate = ReportGate()
        self._counter = itertools.count(1)
        self._table = Subscriptions()
        self._group_of_topic: dict[bytes, str] = {}
        # The home loop and what is bound to it.
        self._home: asyncio.AbstractEventLoop | None = None
        self._guard: AsyncGenerator[None, None] | None = None
        self._conns: Connections | None = None

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
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self.send(channel, message))
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
            capacity = self.get_capacity(channel)
            now = time.time()
            entry = pack_entry(now + self.expiry, payload)
            pushed, expired = await conns.send_script(
                keys=[self._names.queue_key(channel)],
                args=[now, entry, capacity, self._expiry_ms],
            )
            self._note_expired(f"channel {channel!r}", expired)
            if not pushed:
                raise ChannelFull(
                    f"Channel {channel!r} is full: its capacity is {capacity}."
                )

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
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self.receive(channel))
        if process is not None:
            return await self._local.receive(channel)
        key = self._names.queue_key(channel)
        while True:
            entry = await conns.pop(key)
            if entry is None:
                continue
            if unpack_deadline(entry) <= time.time():
                self._note_expired(f"channel {channel!r}", 1)
                continue
            message: dict[str, Any] = self._unpackb(memoryview(entry)[ENTRY_HEADER:])
            return message

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
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self.group_add(group, channel))
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
        self._group_of_topic[topic.encode()] = group
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
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self.group_discard(group, channel))
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
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self.group_send(group, message))
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
        self._note_expired(f"worker channels of group {group!r}", expired)
        if full:
            self.stats.queue_dropped += len(full)
            self._report_full(group, len(full), members, message, "worker channels")
        if self._table.is_wanted(topic):
            self._fan_out(group, self._unpackb(payload))

    # Flush extension and cleanup

    async def flush(self) -> None:
        """Delete this prefix's keys in Redis and this process's groups.

        Queued messages on normal channels, the group members stored in
        Redis, and this process's queued messages and memberships are
        dropped. Other processes keep their own memberships: flush is meant
        for tests.
        """
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self.flush())
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
        home = self._home
        if home is None:
            return
        if home is not asyncio.get_running_loop():
            if home.is_running() and not home.is_closed():
                return await self._delegate(self.close())
            self._abandon()
            return
        guard, self._guard = self._guard, None
        await self._release()
        if guard is not None:
            await guard.aclose()

    # Internals: event loops

    async def _settle(self) -> Connections | None:
        """Make the running loop home; return ``None`` to delegate instead.

        Calls are delegated while another thread's home loop runs. A home
        loop that has stopped or closed is replaced by the running one.
        """
        loop = asyncio.get_running_loop()
        home = self._home
        if home is not None and home.is_running() and not home.is_closed():
            return None
        self._abandon()
        self._home = loop
        name = _CLIENT_NAME_UNSAFE.sub("_", f"{self.prefix}-{self.process_id}")
        conns = self._conns = Connections(
            url=self._url,
            redis_kwargs=self._redis_kwargs,
            client_name=f"{name}-pubsub",
            table=self._table,
            where=self._where,
            on_message=self._on_message,
            on_tick=self._tick,
            stats=self.stats,
            subscribe_timeout=self.subscribe_timeout,
            health_check_interval=self.health_check_interval,
            expiry_ms=self._expiry_ms,
        )
        # An async generator started on the loop is closed by the loop's
        # shutdown_asyncgens() (asyncio.run, asyncio.Runner, pytest-asyncio)
        # while the loop still runs: the moment to close our connections.
        guard = self._guard = self._guard_loop(loop)
        await anext(guard)
        if self._table.wanted:
            conns.subscriber.start()
        return conns

    async def _guard_loop(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self._home is loop:
                self._guard = None
                await self._release()

    async def _delegate(self, coroutine: Coroutine[Any, Any, T]) -> T:
        home = self._home
        if home is None:  # the home loop ended meanwhile: run here
            return await coroutine
        future = asyncio.run_coroutine_threadsafe(coroutine, home)
        return await asyncio.wrap_future(future)

    def _abandon(self) -> None:
        """Forget the connections of a home loop that has ended."""
        guard, self._guard = self._guard, None
        conns, self._conns = self._conns, None
        self._home = None
        if guard is not None:
            # Finish the generator here: its finally does nothing now that
            # the loop is not home, and a dead loop cannot finalise it.
            closing = guard.aclose()
            with contextlib.suppress(StopIteration):
                closing.send(None)
        if conns is not None:
            conns.abandon()

    async def _release(self) -> None:
        """Close the home loop's connections."""
        conns, self._conns = self._conns, None
        self._home = None
        if conns is not None:
            await conns.close()

    # Internals: pub/sub

    async def _subscribe_process_topic(self) -> None:
        conns = self._conns if self._home is asyncio.get_running_loop() else None
        if conns is None and (conns := await self._settle()) is None:
            return await self._delegate(self._subscribe_process_topic())
        await conns.subscriber.subscribe(self._process_topic)

    async def _unsubscribe(self, conns: Connections, topics: list[str]) -> None:
        for topic in topics:
            self._group_of_topic.pop(topic.encode(), None)
        await conns.subscriber.unsubscribe(topics)

    async def _tick(self) -> None:
        """Report overdue drop counts; leave groups whose members all expired."""
        for what, count in self._gate.overdue(time.monotonic()):
            logger.warning(
                "%d more message(s) lost since the last report: %s.", count, what
            )
        empty = [
            topic.decode()
            for topic, group in self._group_of_topic.items()
            if not self._local.has_members(group)
        ]
        if empty and self._conns is not None:
            await self._unsubscribe(self._conns, empty)

    def _on_message(self, topic: bytes, data: bytes) -> None:
        """Deliver a message from the pub/sub connection, in this process."""
        if topic == self._process_topic_bytes:
            channel, payload = split_direct(data)
            try:
                self._local.push(channel, self._unpackb(payload))
            except ChannelFull:
                self.stats.remote_dropped += 1
                where = f"full channel {channel!r}"
                dropped = self._gate.add(where, 1, time.monotonic())
                if dropped:
                    logger.warning(
                        "Channel %r is full (capacity %d): dropped %d message(s) "
                        "sent to it from other processes.",
                        channel,
                        self._local.capacity(channel),
                        dropped,
                    )
            return
        group = self._group_of_topic.get(topic)
        if group is None or data.startswith(self._pid_bytes):
            return  # unsubscribed since, or sent from here and delivered here
        self._fan_out(group, self._unpackb(memoryview(data)[ORIGIN_LENGTH:]))

    def _fan_out(self, group: str, message: dict[str, Any]) -> None:
        result = self._local.fan_out(group, message)
        if result.full:
            self._report_full(
                group, len(result.full), result.members, message, "members"
            )

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

    def _note_expired(self, where: str, count: int) -> None:
        if not count:
            return
        self.stats.queue_expired += count
        expired = self._gate.add(f"expired on {where}", count, time.monotonic())
        if expired:
            logger.warning(
                "%d message(s) expired unread on %s (expiry is %ss).",
                expired,
                where,
                self.expiry,
            )

    def _report_full(
        self, group: str, full: int, members: int, message: dict[str, Any], what: str
    ) -> None:
        dropped = self._gate.add(
            f"full {what} of group {group!r}", full, time.monotonic()
        )
        if dropped:
            logger.warning(
                "group_send to %r: %d of %d %s were full; message dropped for "
                "them (message type %r; %d dropped since the last report).",
                group,
                full,
                members,
                what,
                message.get("type"),
                dropped,
            )


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")
    return value


def _one_host(
    hosts: Sequence[str | Mapping[str, Any]] | None,
) -> tuple[str, dict[str, Any]]:
    """Return the URL and redis-py keyword arguments of the one host."""
    if hosts is None:
        hosts = [_DEFAULT_HOST]
    if isinstance(hosts, str | bytes) or not isinstance(hosts, Sequence):
        raise TypeError(f"hosts must be a list of one Redis URL, got {hosts!r}.")
    if len(hosts) != 1:
        raise ValueError(
            "RedisChannelLayer uses one Redis server; hosts must list exactly "
            f"one, got {len(hosts)}."
        )
    host: object = hosts[0]
    kwargs: dict[str, Any] = {}
    if isinstance(host, Mapping):
        kwargs = dict(host)
        host = kwargs.pop("address", None)
    if not isinstance(host, str) or not host:
        raise TypeError(
            "Each host must be a Redis URL or a dict with an 'address' URL, "
            f"got {hosts[0]!r}."
        )
    # The pub/sub reader reads RESP2 arrays; bytes keep msgpack payloads whole.
    kwargs.update(protocol=2, decode_responses=False)
    # redis-py 6+ defaults to 5 s, enforced on Python 3.11 with
    # asyncio.wait_for(), which can swallow a task's cancellation (a consumer
    # that never stops, a loop that never shuts down). The layer bounds its
    # own waits instead; set socket_timeout in the host dict to have one.
    kwargs.setdefault("socket_timeout", None)
    return host, kwargs


def _describe(url: str) -> str:
    """Return ``url`` without credentials, for messages."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"{parts.scheme}://{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _import_serialiser() -> tuple[Callable[[Any], Any], Callable[[Any], bytes]]:
    """Check that redis-py is there; return msgpack's decoder and encoder."""
    try:
        import msgpack
        import redis.asyncio  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "RedisChannelLayer needs redis-py and msgpack, which are not "
            f"installed ({error}). Install them with: {_INSTALL}"
        ) from error
    # Keys other than strings are allowed: payloads come from our processes.
    return (
        functools.partial(msgpack.unpackb, raw=False, strict_map_key=False),
        functools.partial(msgpack.packb, use_bin_type=True),
    )
