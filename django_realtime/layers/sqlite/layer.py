"""The SQLite channel layer: every process of a project, through one file.

The operations are statements on the file's tables (:mod:`._tables`), run
by one thread per layer (:mod:`.engine`); receivers are woken through Unix
datagram sockets (:mod:`.wake`) and take their messages from the
:class:`~._inbox.Inbox`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from django_realtime.layers._core import LayerStats
from django_realtime.layers._plain import decode, encoder
from django_realtime.layers._slot import EngineSlot
from django_realtime.layers.base import (
    BaseChannelLayer,
    CapacityPattern,
    log_full_members,
    require_seconds,
)
from django_realtime.layers.sqlite import _tables
from django_realtime.layers.sqlite._inbox import Inbox
from django_realtime.layers.sqlite.engine import Engine
from django_realtime.layers.sqlite.wake import WakeSocket, wake_dir

__all__ = ["DEFAULT_PATH", "SQLiteChannelLayer"]

encode = encoder("SQLiteChannelLayer")

logger = logging.getLogger("django_realtime.layers.sqlite")

#: The file of a layer configured without ``path``, relative to the current
#: directory (the project's, under ``manage.py``).
DEFAULT_PATH = "realtime.sqlite3"


class SQLiteChannelLayer(BaseChannelLayer):
    """Carry messages between the processes of one machine through a file.

    Configure it in ``CHANNEL_LAYERS``::

        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
                "CONFIG": {"path": BASE_DIR / "realtime.sqlite3"},
            },
        }

    Every process that configures the same ``path`` (``runserver``,
    ``runworker``, ``manage.py shell``, a cron job) shares its channels and
    groups. Messages, memberships, capacity and expiry live in the file
    (WAL mode), so a send to a full channel raises
    :exc:`~django_realtime.exceptions.ChannelFull` whichever process reads
    the channel.

    Delivery: a send returns once its transaction has committed; then the
    receiving processes are poked through a Unix datagram socket in a
    directory beside the file (``<path>.wake/``). A receiving process also
    looks every ``poll_interval`` seconds, in case a poke was lost. A
    process-local channel (a ``new_channel()`` name) is read only by the
    process that made it; a normal channel by any process, each message by
    one receiver. A process found dead (its socket file left behind) has
    its messages and memberships deleted by the next process that writes
    for it.

    Nothing is dropped silently: :meth:`group_send` skips full members, logs
    one warning with the counts and counts them in ``stats``; messages that
    expire unread are logged and counted. If the file stays locked by
    another process for ``timeout`` seconds, the operation raises
    :exc:`~django_realtime.exceptions.ChannelLayerError` and nothing of it
    was written.

    Messages may hold plain data only (dicts, lists, tuples, sets, strings,
    bytes, numbers, booleans, ``None``); anything else raises
    :exc:`TypeError` on send. Each receive returns its own dict; members of
    a group in one process share the values nested in a group message, as
    with the in-memory layer: treat them as read-only.

    The layer may be used from any event loop and thread (``async_to_sync``
    from a view or the shell): its I/O runs in one thread per layer, started
    on first use and ended by :meth:`close`.

    Args:
        path: The database file. It is created with its tables if missing;
            its directory must exist. The default is :data:`DEFAULT_PATH`.
        expiry: Seconds a message waits to be received before it is discarded.
        group_expiry: Seconds a group membership lasts; ``group_add`` again
            to renew it.
        capacity: Messages a channel holds before it is full.
        channel_capacity: Capacities for channels matching glob strings or
            compiled regular expressions, first match wins.
        timeout: Seconds an operation waits for another process's lock on the
            file before it fails.
        poll_interval: Seconds between two looks for messages when no poke
            came.
        clock: Return wall-clock seconds, the same in every process; tests
            pass a fake clock.

    Attributes:
        process_id: The id in this layer's ``new_channel()`` names.
        stats: A :class:`~django_realtime.layers.LayerStats` with this
            process's counters.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        *,
        timeout: float = 5.0,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise TypeError(f"path must be a file path, got {path!r}.")
        self.path = Path(os.path.abspath(path))
        self.group_expiry = require_seconds(group_expiry, "group_expiry")
        self.timeout = require_seconds(timeout, "timeout")
        self.poll_interval = require_seconds(poll_interval, "poll_interval")
        self.process_id = secrets.token_hex(_tables.PROCESS_ID_LENGTH // 2)
        self.stats = LayerStats()
        self._clock = clock
        self._wake_dir = wake_dir(self.path, _tables.PROCESS_ID_LENGTH)
        self._inbox = Inbox(self.stats)
        self._counter = itertools.count(1)
        self._slot: EngineSlot[Engine] = EngineSlot(self._make_engine, self._forked)

    def __repr__(self) -> str:
        return f"<SQLiteChannelLayer {self.path}>"

    # Channels

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``; return once it is in the file.

        Raises:
            ChannelFull: The channel holds its capacity of live messages.
            ChannelLayerError: The file stayed locked for ``timeout`` seconds.
            InvalidChannelName: ``channel`` is not a valid channel name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value that is not plain data.
        """
        self.require_valid_message(message)
        self.require_valid_channel_name(channel)
        payload = encode(message)
        expiry, capacity = self.expiry, self.get_capacity(channel)

        def operation(connection: Any, now: float) -> tuple[None, set[str]]:
            target = _tables.insert(
                connection, channel, payload, now=now, expiry=expiry, capacity=capacity
            )
            return None, {target}

        await self._slot.get().submit(operation)
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
        engine.wake.bind()
        loop = asyncio.get_running_loop()
        normal = not _tables.target_of(channel)
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            message = self._inbox.take_or_wait(channel, self._clock(), waiter, normal)
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

        The name is ``prefix``, ``sqlite.``, this layer's process id, ``!``
        and a counter, for example ``"specific.sqlite.3f9a1c0e7b2d!1"``.

        Raises:
            InvalidChannelName: The resulting name is invalid.
        """
        self._listen()
        name = f"{prefix}sqlite.{self.process_id}!{next(self._counter)}"
        self.require_valid_channel_name(name)
        return name

    # Groups

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership.

        Raises:
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        group_expiry = self.group_expiry

        def operation(connection: Any, now: float) -> tuple[None, set[str]]:
            _tables.group_add(connection, group, channel, now + group_expiry)
            return None, set()

        await self._slot.get().submit(operation)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; do nothing if it is not in it.

        Raises:
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)

        def operation(connection: Any, now: float) -> tuple[None, set[str]]:
            _tables.group_discard(connection, group, channel)
            return None, set()

        await self._slot.get().submit(operation)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``.

        Members that are full are skipped: the call logs one warning with the
        counts and adds them to ``stats.dropped_messages``; it does not raise.

        Raises:
            ChannelLayerError: The file stayed locked for ``timeout`` seconds.
            InvalidChannelName: ``group`` is not a valid group name.
            InvalidMessageError: ``message`` is not a dict.
            TypeError: ``message`` holds a value that is not plain data.
        """
        self.require_valid_message(message)
        self.require_valid_group_name(group)
        payload = encode(message)
        expiry, capacity_of = self.expiry, self.get_capacity

        def operation(connection: Any, now: float) -> tuple[Any, set[str]]:
            return _tables.group_send(
                connection,
                group,
                payload,
                now=now,
                expiry=expiry,
                capacity_of=capacity_of,
            )

        result = await self._slot.get().submit(operation)
        self.stats.sent += len(result.delivered)
        if result.full:
            self.stats.dropped_messages += len(result.full)
            log_full_members(
                logger, group, result.full, result.members, message.get("type")
            )

    # Flush extension

    async def flush(self) -> None:
        """Drop every message and membership in the file, of every process."""

        def operation(connection: Any, now: float) -> tuple[None, set[str]]:
            _tables.flush(connection)
            return None, set()

        await self._slot.get().submit(operation)
        self._inbox.clear()

    def discard_channel(self, channel: str) -> None:
        """Drop the messages waiting on ``channel``: its consumer has ended."""
        dropped = self._inbox.discard(channel)
        self.stats.discarded_messages += dropped
        engine = self._slot.current
        if engine is None:
            return

        def operation(connection: Any, now: float) -> tuple[int, set[str]]:
            return _tables.discard(connection, channel), set()

        engine.post(operation)

    async def close(self) -> None:
        """End the layer's thread, close its file and remove its socket.

        The layer may be used again afterwards: it starts a new thread.
        """
        await self._slot.close(self.timeout + 5)

    # Internals

    def _make_engine(self) -> Engine:
        return Engine(
            path=self.path,
            wake=WakeSocket(self._wake_dir, self.process_id),
            clock=self._clock,
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            sweep_interval=max(1.0, min(self.expiry, 10.0)),
            schema=_tables.create_tables,
            look=self._take,
            sweep=self._sweep,
            on_dead=self._forget,
            name="sqlite-layer",
        )

    def _forked(self) -> None:
        """Start afresh in a process forked from the one that used the layer.

        The engine's thread stayed in the parent, with the parent's
        receivers and process id: the child takes a new id (its channels
        are its own) and a new engine.
        """
        self.process_id = secrets.token_hex(_tables.PROCESS_ID_LENGTH // 2)
        self._inbox = Inbox(self.stats)

    # On the engine's thread

    def _take(self, engine: Engine) -> None:
        """Take messages for the receivers waiting in this process."""
        inbox = self._inbox
        if not inbox.waiting:
            return
        me, normal = self.process_id, inbox.waiting_normal()
        claimed = engine.transaction(
            lambda connection, now: _tables.claim(
                connection, me, normal, inbox.lacking, now
            )
        )
        if claimed is None:
            return
        messages = []
        # A group message reaches this process once per member: decode it
        # once, and give each member a shallow copy.
        decoded: dict[bytes, dict[str, Any]] = {}
        for channel, deadline, payload in claimed.messages:
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
            count = sum(claimed.expired.values())
            self.stats.expired_messages += count
            self.stats.expired_memberships += sum(
                len(groups) for groups in claimed.evicted.values()
            )
            logger.warning(
                "%d messages expired unread on %d channels of this process "
                "(expiry is %ss); %d channels left their groups.",
                count,
                len(claimed.expired),
                self.expiry,
                len(claimed.evicted),
            )
        if messages or claimed.evicted:
            self._inbox.deliver(messages, claimed.evicted)

    def _sweep(self, connection: Any, now: float) -> None:
        messages, channels, memberships = _tables.sweep(connection, now)
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

    def _forget(self, engine: Engine, process: str) -> None:
        dropped = engine.transaction(
            lambda connection, now: _tables.forget_process(connection, process)
        )
        if dropped is not None:
            logger.warning(
                "SQLite layer at %s: process %s ended without closing its "
                "layer; dropped its %d unread messages and its group "
                "memberships.",
                self.path,
                process,
                dropped,
            )

    def _listen(self) -> None:
        """Bind this process's wake-up socket, so senders can poke it."""
        self._slot.get().wake.bind()
