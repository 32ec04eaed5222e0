"""The in-memory channel layer: the default, for one process.

Use it in development, in tests and in single-process deployments. It cannot
carry messages between processes: use channels-redis for that.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from django_realtime.layers._core import LayerCore, LayerStats
from django_realtime.layers._waiters import Waiters
from django_realtime.layers.base import (
    BaseChannelLayer,
    CapacityPattern,
    log_full_members,
    require_seconds,
)

__all__ = ["InMemoryChannelLayer"]

logger = logging.getLogger(__name__)


class InMemoryChannelLayer(BaseChannelLayer):
    """Carry messages between consumers of one process, in memory.

    Configure it in ``CHANNEL_LAYERS``; ``CONFIG`` takes the arguments below::

        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "django_realtime.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 500, "expiry": 30},
            },
        }

    Nothing is dropped silently:

    - :meth:`send` to a full channel raises
      :exc:`~django_realtime.exceptions.ChannelFull`.
    - :meth:`group_send` skips members that are full, logs one warning per
      call with the counts, and adds them to ``stats.dropped_messages``.
    - Messages that expire unread are logged (one warning per sweep, at most
      once a second) and counted in ``stats.expired_messages``.

    Messages are not deep-copied. :meth:`send` and :meth:`group_send` store a
    shallow copy, so the sender may reuse or change its dict afterwards; a
    group message is stored once for all members, and each :meth:`receive`
    returns its own shallow copy, so receivers may add, change or remove
    keys. Values nested inside a message (lists, dicts) are shared between
    the sender and every receiver: do not mutate them. Deep copies would cost
    a group send to 1,000 members 1,000 copies of every nested value.

    A channel whose messages are found expired is taken as abandoned by its
    reader and removed from all its groups.

    The layer may be used from successive event loops (as pytest-asyncio
    does, one per test) but from one thread at a time: it holds no locks.

    Args:
        expiry: Seconds a message waits to be received before it is discarded.
        group_expiry: Seconds a group membership lasts; ``group_add`` again
            to renew it.
        capacity: Messages a channel holds before it is full.
        channel_capacity: Capacities for channels matching glob strings or
            compiled regular expressions, first match wins.
        clock: Return the current time in seconds; it must not go backwards.
            Tests pass a fake clock to make time pass instantly.

    Attributes:
        stats: A :class:`~django_realtime.layers.LayerStats` with
            counters of sent, received, rejected, dropped and expired
            messages.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        require_seconds(group_expiry, "group_expiry")
        self.group_expiry = group_expiry
        self._clock = clock
        self._core = LayerCore(
            expiry=expiry,
            group_expiry=group_expiry,
            capacity_of=self.get_capacity,
            sweep_interval=min(1.0, expiry, group_expiry),
        )
        self._waiters = Waiters()
        self._prefix = f"inmemory!{secrets.token_hex(6)}"
        self._counter = 0
        # Whether this process ever showed it has consumers (a channel made,
        # a receive, a group joined), and whether the lonely-sender warning
        # was given.
        self._receives = False
        self._warned = False

    @property
    def stats(self) -> LayerStats:
        """Return the layer's message counters."""
        return self._core.stats

    # Channels

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``.

        Raises:
            ChannelFull: The channel holds its capacity of messages.
            InvalidChannelName: ``channel`` is not a valid channel name.
            InvalidMessageError: ``message`` is not a dict.
        """
        self.require_valid_message(message)
        self.require_valid_channel_name(channel)
        now = self._now()
        self._core.push(channel, message, now)
        if channel in self._waiters:
            self._waiters.wake(channel)
        if not self._receives:
            self._warn_lonely(f"send to {channel!r}")

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel`` and return it.

        Several receivers may wait on one channel; each message goes to one
        of them, the longest waiting first. Cancelling a waiting receive loses
        no message.

        Raises:
            InvalidChannelName: ``channel`` is not a valid channel name.
        """
        self.require_valid_channel_name(channel)
        self._receives = True
        core = self._core
        while True:
            message = core.pop(channel, self._now())
            if message is not None:
                return message
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.add(channel, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self._waiters.forget(channel, waiter)
                raise

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new channel name, unique in this process.

        The name is ``prefix`` followed by ``inmemory!`` and a random part,
        for example ``"specific.inmemory!3f9a1c0e7"``.

        Raises:
            InvalidChannelName: The resulting name is invalid (``prefix``
                contains characters channel names do not allow).
        """
        self._receives = True
        self._counter += 1
        name = f"{prefix}{self._prefix}{self._counter}"
        self.require_valid_channel_name(name)
        return name

    def _warn_lonely(self, what: str) -> None:
        """Warn, once, of a send in a process where nothing ever received."""
        if self._warned:
            return
        self._warned = True
        logger.warning(
            "%s in a process where nothing ever received through the in-memory "
            "channel layer (a shell, a cron job?): that layer belongs to one "
            "process, so consumers served by another never get it. Configure a "
            "layer that processes share: the SQLite layer on one machine, or "
            "Redis (docs/topics/channel-layers.rst). Logged once per process.",
            what,
        )

    # Groups

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership.

        Raises:
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._receives = True
        self._core.group_add(group, channel, self._now())

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; do nothing if it is not in it.

        Raises:
            InvalidChannelName: ``group`` or ``channel`` is invalid.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._core.group_discard(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group``.

        Members that are full are skipped: the call logs one warning with the
        counts and adds them to ``stats.dropped_messages``; it does not raise.

        Raises:
            InvalidChannelName: ``group`` is not a valid group name.
            InvalidMessageError: ``message`` is not a dict.
        """
        self.require_valid_message(message)
        self.require_valid_group_name(group)
        result = self._core.group_push(group, message, self._now())
        if self._waiters:
            self._waiters.wake_each(result.delivered)
        if not self._receives:
            self._warn_lonely(f"group_send to {group!r}")
        if result.full:
            log_full_members(
                logger, group, result.full, result.members, message.get("type")
            )

    # Flush extension

    async def flush(self) -> None:
        """Drop every queued message and every group membership.

        Receivers waiting on a channel keep waiting; the counters in
        :attr:`stats` are kept.
        """
        self._core.flush()

    async def close(self) -> None:
        """Do nothing: the layer holds no connections."""

    def discard_channel(self, channel: str) -> None:
        """Drop the messages queued on ``channel``: its consumer has ended.

        Consumers call this as they end, so that what was sent to them in
        their last moments does not wait for its expiry (and a warning).
        """
        dropped = self._core.discard(channel)
        if dropped:
            logger.debug(
                "Dropped %d unread messages of ended channel %s.", dropped, channel
            )

    # Internals

    def _now(self) -> float:
        now = self._clock()
        report = self._core.maybe_sweep(now)
        if report is not None and report.expired_messages:
            logger.warning(
                "%d messages expired unread on %d channels (expiry is %ss); "
                "%d group memberships ended.",
                report.expired_messages,
                report.channels,
                self.expiry,
                report.expired_memberships,
            )
        return now
