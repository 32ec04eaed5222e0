"""The Redis layer's process-local channels: queues, receivers, groups.

Channels made by ``new_channel()`` are received only in the process that
made them, so their queues and their group memberships live in its memory,
in a :class:`~django_realtime.layers._core.LayerCore` (the in-memory layer's
rules for capacity and expiry). :class:`LocalChannels` adds the receivers
waiting on those queues, on one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from django_realtime.layers._core import GroupSendResult, LayerCore, LayerStats
from django_realtime.layers._waiters import Waiters

logger = logging.getLogger("django_realtime.layers.redis.layer")


class LocalChannels:
    """Queue messages for this process's channels and wake their receivers.

    Args:
        expiry: Seconds a message stays deliverable.
        group_expiry: Seconds a membership lasts unless renewed.
        capacity_of: Return the capacity of a channel, given its name.
    """

    def __init__(
        self,
        *,
        expiry: float,
        group_expiry: float,
        capacity_of: Callable[[str], int],
    ) -> None:
        self.expiry = expiry
        self._core = LayerCore(
            expiry=expiry,
            group_expiry=group_expiry,
            capacity_of=capacity_of,
            sweep_interval=min(1.0, expiry, group_expiry),
        )
        self._waiters = Waiters()

    @property
    def stats(self) -> LayerStats:
        """Return the counters of the local queues."""
        return self._core.stats

    def now(self) -> float:
        """Return the monotonic time, sweeping expired state once a second."""
        now = time.monotonic()
        report = self._core.maybe_sweep(now)
        if report is not None and report.expired_messages:
            logger.warning(
                "%d messages expired unread on %d channels of this process "
                "(expiry is %ss); %d group memberships ended.",
                report.expired_messages,
                report.channels,
                self.expiry,
                report.expired_memberships,
            )
        return now

    def capacity(self, channel: str) -> int:
        """Return the capacity of ``channel``."""
        return self._core.capacity(channel)

    def push(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel`` and wake a receiver.

        Raises:
            ChannelFull: ``channel`` holds its capacity of messages.
        """
        self._core.push(channel, message, self.now())
        if channel in self._waiters:
            self._waiters.wake(channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel``; cancelling loses none."""
        core = self._core
        while True:
            message = core.pop(channel, self.now())
            if message is not None:
                return message
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.add(channel, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self._waiters.forget(channel, waiter)
                raise

    # Groups

    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or renew its membership."""
        self._core.group_add(group, channel, self.now())

    def group_discard(self, group: str, channel: str) -> bool:
        """Remove ``channel`` from ``group``; return whether it was a member."""
        members = self._core.members(group, self.now())
        if channel not in members:
            return False
        self._core.group_discard(group, channel)
        return True

    def has_members(self, group: str) -> bool:
        """Return whether ``group`` has a live member in this process."""
        return bool(self._core.members(group, self.now()))

    def fan_out(self, group: str, message: dict[str, Any]) -> GroupSendResult:
        """Queue ``message`` for every member of ``group`` that has room.

        The members share one copy; each receive returns a shallow copy.
        """
        result = self._core.group_push(group, message, self.now())
        if self._waiters:
            self._waiters.wake_each(result.delivered)
        return result

    def discard(self, channel: str) -> None:
        """Drop the messages queued on ``channel``: its receiver has ended."""
        dropped = self._core.discard(channel)
        if dropped:
            logger.debug(
                "Dropped %d unread messages of ended channel %s.", dropped, channel
            )

    def flush(self) -> None:
        """Drop every queued message and membership; receivers keep waiting."""
        self._core.flush()
