"""What arrives on the Redis layer's pub/sub topics, delivered in this process.

A process subscribes to one topic of its own, for messages sent to its
``new_channel()`` channels from other processes, and to one topic per group
it has members in. :class:`Topics` knows which group each topic is and
hands what arrives to :class:`~django_realtime.layers.redis._local.
LocalChannels`, reporting the messages that full channels cannot take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django_realtime.exceptions import ChannelFull
from django_realtime.layers.redis._core import ORIGIN_LENGTH, split_direct
from django_realtime.layers.redis._local import LocalChannels
from django_realtime.layers.redis._reports import DropReports


class Topics:
    """Deliver pub/sub messages to this process's channels and groups.

    Args:
        local: This process's channels.
        reports: Where lost messages are reported.
        decode: msgpack's decoder.
        process_topic: This process's own topic.
        process_id: This process's id, which starts the group messages it
            publishes (it delivers them itself, without waiting for Redis).
    """

    def __init__(
        self,
        *,
        local: LocalChannels,
        reports: DropReports,
        decode: Callable[[Any], Any],
        process_topic: str,
        process_id: str,
    ) -> None:
        self._local = local
        self._reports = reports
        self._decode = decode
        self._process_topic = process_topic.encode()
        self._origin = process_id.encode()
        self._group_of_topic: dict[bytes, str] = {}

    def add_group(self, topic: str, group: str) -> None:
        """Deliver what arrives on ``topic`` to the members of ``group``."""
        self._group_of_topic[topic.encode()] = group

    def forget(self, topics: list[str]) -> None:
        """Deliver nothing more from ``topics`` (being unsubscribed)."""
        for topic in topics:
            self._group_of_topic.pop(topic.encode(), None)

    def without_members(self) -> list[str]:
        """Return the group topics whose members here have all left or expired."""
        return [
            topic.decode()
            for topic, group in self._group_of_topic.items()
            if not self._local.has_members(group)
        ]

    def on_message(self, topic: bytes, data: bytes) -> None:
        """Deliver a message from the pub/sub connection, in this process."""
        if topic == self._process_topic:
            channel, payload = split_direct(data)
            try:
                self._local.push(channel, self._decode(payload))
            except ChannelFull:
                self._reports.full_channel(channel, self._local.capacity(channel))
            return
        group = self._group_of_topic.get(topic)
        if group is None or data.startswith(self._origin):
            return  # unsubscribed since, or sent from here and delivered here
        self.fan_out(group, self._decode(memoryview(data)[ORIGIN_LENGTH:]))

    def fan_out(self, group: str, message: dict[str, Any]) -> None:
        """Deliver ``message`` to this process's members of ``group``."""
        result = self._local.fan_out(group, message)
        if result.full:
            self._reports.full_members(
                group, len(result.full), result.members, message, "members"
            )
