"""The PostgreSQL channel layer: messages in tables, wake-ups by NOTIFY.

The operations are statements on the layer's tables (:mod:`._tables`), run
by one thread per layer with connections of its own (:mod:`.engine`);
receivers take their messages from an :class:`~django_realtime.layers.
sqlite._inbox.Inbox`, filled when a notification (or a periodic look)
says that some may be waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from django_realtime.exceptions import ChannelFull
from django_realtime.layers._core import LayerStats
from django_realtime.layers._plain import decode, encoder
from django_realtime.layers._slot import EngineSlot
from django_realtime.layers.base import (
    BaseChannelLayer,
    CapacityPattern,
    log_full_members,
    require_seconds,
)
from django_realtime.layers.postgres import _tables
from django_realtime.layers.postgres.engine import Connection, Engine
from django_realtime.layers.sqlite._inbox import Inbox

__all__ = ["PostgresChannelLayer"]

encode = encoder("PostgresChannelLayer")

logger = logging.getLogger("django_realtime.layers.postgres")


class PostgresChannelLayer(BaseChannelLayer):
    """Carry messages between processes through a PostgreSQL database.

    Configure it in ``CHANNEL_LAYERS``::

        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "django_realtime.layers.postgres.PostgresChannelLayer",
                "CONFIG": {"alias": "default"},
            },
        }

    Every process whose layer uses the same database shares its channels and
    groups, on one machine or many. Messages, memberships, capacity and
    expiry live in tables created by ``manage.py migrate``; a send commits
    its row, then ``NOTIFY`` wakes the process that reads the channel (the
    notification carries no message, so messages of any size travel). A
    receiving process also looks every ``poll_interval`` seconds.

    A process-local channel (a ``new_channel()`` name) is read only by the
    process that made it; a normal channel by one receiver in any process.
    Expired messages and memberships are deleted by the layer itself, and
    the messages and memberships of a process that stopped without closing
    its layer are deleted once it has not been seen for ``dead_after``
    seconds.

    If the database goes away, each operation waits up to ``timeout``
    seconds for it to come back (reconnecting with backoff), then raises
    :exc:`~django_realtime.exceptions.ChannelLayerError`: an operation that
    returned is in the database, one that raised is not. The listening
    connection reconnects by itself and looks at the tables, so messages
    sent meanwhile are received.

    Nothing is dropped silently: :meth:`group_send` skips full members, logs
    one warning with the counts and counts them in ``stats``; messages that
    expire unread are logged and counted.

    Messages may hold plain data only (dicts, lists, tuples, sets, strings,
    bytes, numbers, booleans, ``None``); anything else raises
    :exc:`TypeError` on send.

    The layer may be used from any event loop and thread (``async_to_sync``
    from a view or the shell): its I/O runs in one thread per layer, with
    two connections (one writes, one listens), started on first use and
    ended by :meth:`close`.

    Args:
        alias: The ``DATABASES`` key of the PostgreSQL database; the layer
            connects with its settings.
        expiry: Seconds a message waits to be received before it is discarded.
        group_expiry: Seconds a group membership lasts; ``group_add`` again
            to renew it.
        capacity: Messages a channel holds before it is full.
        channel_capacity: Capacities for channels matching glob strings or
            compiled regular expressions, first match wins.
        timeout: Seconds an operation waits for the database before failing.
        poll_interval: Seconds between two looks for messages when no
            notification came.
        dead_after: Seconds after which a process not seen is taken for dead.
        durable: Wait for each send's commit to reach the disk. Off by
            default: the layer's writes use ``synchronous_commit = off``, so
            a send returns once committed, and a crash of the database
            server (not of a Django process) may lose the last fraction of
            a second of messages, as a Redis layer without persistence
            would. The history store is always durable.
        clock: Return seconds since the epoch; ``None`` (the default) uses
            the database's clock, which every process shares. Tests pass a
            fake clock.

    Attributes:
        process_id: The id in this layer's ``new_channel()`` names.
        stats: A :class:`~django_realtime.layers.LayerStats` with this
            process's counters.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        alias: str = "default",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        *,
        timeout: float = 5.0,
        poll_interval: float = 5.0,
        dead_after: float = 120.0,
        durable: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        if not isinstance(alias, str) or not alias:
            raise TypeError(f"alias must be a key of DATABASES, got {alias!r}.")
        self.alias = alias
        self.group_expiry = require_seconds(group_expiry, "group_expiry")
        self.timeout = require_seconds(timeout, "timeout")
        self.poll_interval = require_seconds(poll_interval, "poll_interval")
        self.dead_after = require_seconds(dead_after, "dead_after")
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be True or False, got {durable!r}.")
        self.durable = durable
        self.process_id = secrets.token_hex(_tables.PROCESS_ID_LENGTH // 2)
        self.stats = LayerStats()
        self._clock = clock
        self._inbox = Inbox(self.stats)
        self._counter = itertools.count(1)
        self._slot: EngineSlot[Engine] = EngineSlot(self._make_engine, self._forked)

    def __repr__(self) -> str:
        return f"<PostgresChannelLayer DATABASES[{self.alias!r}]>"

    # Channels

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``; return once it is committed.

        Raises:
            ChannelFull: The channel holds its capacity of live messages.
            ChannelLayerError: The database stayed out of reach for
                ``timeout`` seconds, or refused the statement; nothing was
                stored.
            InvalidChannelName: ``channel`` is not a valid channel name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value that is not plain data.
        """
        self.require_valid_message(message)
        self.require_valid_channel_name(channel)
        payload = encode(message)
        expiry, capacity = self.expiry, self.get_capacity(channel)

        async def work(connection: Connection, now: float) -> None:
            await _tables.insert(
                connection,
                channel,
                payload,
                now=now,
                expiry=expiry,
                capacity=capacity,
            )

        try:
            await self._slot.get().submit(work)
        except ChannelFull:
            self.stats.rejected += 1
            raise
        self.stats.sent += 1

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel`` and return it.

        Several receivers may wait on one channel; each message goes to one
        of them. Cancelling a waiting receive loses no message.

        Raises:
            GroupsExpired: The channel was found holding expired messages
                and was taken out of its groups (raised once).
            InvalidChannelName: ``channel`` is not a valid channel name.
        """
        self.require_valid_channel_name(channel)
        engine = self._slot.get()
        loop = asyncio.get_running_loop()
        normal = not _tables.target_of(channel)
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            message = self._inbox.take_or_wait(channel, self._now(), waiter, normal)
            if message is not None:
                return message
            engine.want()
            try:
                await waiter
            except asyncio.CancelledError:
                self._inbox.forget(channel, waiter)
                raise

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new channel name that only this process receives from.

        The name is ``prefix``, ``pg.``, this layer's process id, ``!`` and
        a counter, for example ``"specific.pg.3f9a1c0e7b2d!1"``.

        Raises:
            InvalidChannelName: The resulting name is invalid.
        """
        self._slot.get().want()  # Start listening, so that sends wake us.
        name = f"{prefix}pg.{self.process_id}!{next(self._counter)}"
        self.require_valid_channel_name(name)
        return name

    # Groups

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership.

        Raises:
            ChannelLayerError: The database stayed out of reach.
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        group_expiry = self.group_expiry

        async def work(connection: Connection, now: float) -> None:
            await _tables.group_add(connection, group, channel, now + group_expiry)

        await self._slot.get().submit(work)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; do nothing if it is not in it.

        Raises:
            ChannelLayerError: The database stayed out of reach.
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)

        async def work(connection: Connection, now: float) -> None:
            await _tables.group_discard(connection, group, channel)

        await self._slot.get().submit(work)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``.

        Members that are full are skipped: the call logs one warning with the
        counts and adds them to ``stats.dropped_messages``; it does not raise.

        Raises:
            ChannelLayerError: The database stayed out of reach for
                ``timeout`` seconds; no member got the message.
            InvalidChannelName: ``group`` is not a valid group name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value that is not plain data.
        """
        self.require_valid_message(message)
        self.require_valid_group_name(group)
        payload = encode(message)
        expiry, capacity_of = self.expiry, self.get_capacity

        async def work(connection: Connection, now: float) -> Any:
            return await _tables.group_send(
                connection,
                group,
                payload,
                now=now,
                expiry=expiry,
                capacity_of=capacity_of,
            )

        result = await self._slot.get().submit(work)
        self.stats.sent += len(result.delivered)
        if result.full:
            self.stats.dropped_messages += len(result.full)
            log_full_members(
                logger, group, result.full, result.members, message.get("type")
            )

    # Flush extension

    async def flush(self) -> None:
        """Drop every message and membership in the database, of every process."""
        await self._slot.get().submit(_flush)
        self._inbox.clear()

    def discard_channel(self, channel: str) -> None:
        """Drop the messages waiting on ``channel``: its consumer has ended."""
        self.stats.discarded_messages += self._inbox.discard(channel)
        engine = self._slot.current
        if engine is None:
            return

        async def work(connection: Connection, now: float) -> None:
            await _tables.discard(connection, channel)

        engine.post(work)

    async def close(self) -> None:
        """Forget this process's channels, close the connections, end the thread.

        The layer may be used again afterwards: it starts a new thread.
        """
        engine = self._slot.current
        if engine is not None:
            process = self.process_id

            async def work(connection: Connection, now: float) -> None:
                await _tables.forget(connection, [process])

            try:
                await engine.submit(work)
            except Exception as error:
                logger.warning(
                    "PostgreSQL layer could not remove its channels on close: %s",
                    error,
                )
        await self._slot.close(self.timeout + 5)

    # Internals

    def _now(self) -> float:
        # Receivers drop what expired while queued in the inbox; the
        # database's clock is not at hand here, this machine's stands in.
        if self._clock is not None:
            return self._clock()
        return _wall_clock()

    def _make_engine(self) -> Engine:
        return Engine(
            alias=self.alias,
            channels=[
                _tables.wake_channel(self.process_id),
                _tables.ANY_PROCESS_CHANNEL,
            ],
            on_notify=self._notified,
            on_listen=_no_op,
            look=self._take,
            sweep=self._sweep,
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            sweep_interval=max(1.0, min(self.expiry, 10.0)),
            clock=self._clock,
            name="postgres-layer",
            application_name=f"drt-layer-{self.process_id}",
            # Messages are transient: without durable, a send returns once
            # committed in memory, not once on disk (see the docs).
            session=() if self.durable else ("SET synchronous_commit TO off",),
        )

    def _forked(self) -> None:
        """Start afresh in a process forked from the one that used the layer."""
        self.process_id = secrets.token_hex(_tables.PROCESS_ID_LENGTH // 2)
        self._inbox = Inbox(self.stats)

    # On the engine's loop

    def _notified(self, channel: str, payload: str) -> None:
        if self._inbox.waiting:
            engine = self._slot.current
            if engine is not None:
                engine.want()

    async def _take(self, engine: Engine) -> None:
        """Take messages for the receivers waiting in this process."""
        inbox = self._inbox
        if not inbox.waiting:
            return
        me, normal = self.process_id, inbox.waiting_normal()

        async def work(connection: Connection, now: float) -> _tables.Claim:
            return await _tables.claim(connection, me, normal, inbox.lacking, now)

        claimed: _tables.Claim = await engine.run(work)
        messages = []
        decoded: dict[bytes, dict[str, Any]] = {}
        for channel, deadline, payload in claimed.messages:
            payload = bytes(payload)
            message = decoded.get(payload)
            if message is not None:
                messages.append((channel, deadline, dict(message)))
                continue
            try:
                message = decoded[payload] = decode(payload)
            except Exception:
                logger.exception("Dropped an undecodable message on %s.", channel)
                continue
            messages.append((channel, deadline, message))
        if claimed.expired:
            self.stats.expired_messages += sum(claimed.expired.values())
            self.stats.expired_memberships += sum(
                len(groups) for groups in claimed.evicted.values()
            )
            logger.warning(
                "%d messages expired unread on %d channels of this process "
                "(expiry is %ss); %d channels left their groups.",
                sum(claimed.expired.values()),
                len(claimed.expired),
                self.expiry,
                len(claimed.evicted),
            )
        if messages or claimed.evicted:
            inbox.deliver(messages, claimed.evicted)

    async def _sweep(self, connection: Connection, now: float) -> None:
        engine = self._slot.current
        # Right after an outage other processes may not have been seen yet.
        settled = (
            engine is not None
            and engine.listening
            and time.monotonic() - engine.listening_since > self.dead_after
        )
        result = await _tables.sweep(
            connection,
            now,
            process_id=self.process_id,
            dead_after=self.dead_after if settled else None,
        )
        messages, channels, memberships, dropped = result
        self.stats.expired_memberships += memberships
        if messages:
            self.stats.expired_messages += messages
            logger.warning(
                "%d messages expired unread on %d channels (expiry is %ss); "
                "%d group memberships ended.",
                messages,
                channels,
                self.expiry,
                memberships,
            )
        if dropped:
            logger.warning(
                "Dropped %d unread messages of processes not seen for %ss.",
                dropped,
                self.dead_after,
            )


async def _flush(connection: Connection, now: float) -> None:
    await _tables.flush(connection)


def _no_op() -> None:
    return None


def _wall_clock() -> float:
    return time.time()
