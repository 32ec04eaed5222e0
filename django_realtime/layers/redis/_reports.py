"""Count and report the messages the Redis layer loses.

Nothing is dropped silently: each loss is counted in the layer's
:class:`~django_realtime.layers.redis.RedisLayerStats` and logged as a
warning, at most one per place (a channel, a group) per second, with the
count since the last report; the counts held back are reported by
:meth:`DropReports.overdue`, which the layer calls periodically.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django_realtime.layers.redis._core import RedisLayerStats, ReportGate

# The layer's logger: its modules report under one name.
logger = logging.getLogger("django_realtime.layers.redis.layer")


class DropReports:
    """Count lost messages in ``stats`` and log them, rate-limited.

    Args:
        stats: The layer's counters.
        expiry: The layer's message expiry, in seconds, for the messages.
    """

    def __init__(self, stats: RedisLayerStats, expiry: float) -> None:
        self._stats = stats
        self._expiry = expiry
        self._gate = ReportGate()

    def expired(self, where: str, count: int) -> None:
        """Report ``count`` messages that expired unread on ``where``."""
        if not count:
            return
        self._stats.queue_expired += count
        expired = self._gate.add(f"expired on {where}", count, time.monotonic())
        if expired:
            logger.warning(
                "%d message(s) expired unread on %s (expiry is %ss).",
                expired,
                where,
                self._expiry,
            )

    def full_channel(self, channel: str, capacity: int) -> None:
        """Report a message from another process dropped on a full channel."""
        self._stats.remote_dropped += 1
        dropped = self._gate.add(f"full channel {channel!r}", 1, time.monotonic())
        if dropped:
            logger.warning(
                "Channel %r is full (capacity %d): dropped %d message(s) "
                "sent to it from other processes.",
                channel,
                capacity,
                dropped,
            )

    def full_members(
        self, group: str, full: int, members: int, message: dict[str, Any], what: str
    ) -> None:
        """Report a group message dropped for ``full`` of ``members`` ``what``."""
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

    def overdue(self) -> None:
        """Log the counts held back for more than the report interval."""
        for what, count in self._gate.overdue(time.monotonic()):
            logger.warning(
                "%d more message(s) lost since the last report: %s.", count, what
            )
