"""The Redis layer's normal channels: Redis lists with queue semantics.

A normal channel (no ``!`` in its name, as ``runworker`` reads) is a Redis
list. A send pushes an entry stamped with its deadline, unless the list
holds its capacity; a receive pops entries until one is still within its
deadline. Each message goes to one receiver; expired entries are counted
and reported, never delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django_realtime.exceptions import ChannelFull
from django_realtime.layers.redis._connections import Connections
from django_realtime.layers.redis._core import (
    ENTRY_HEADER,
    Names,
    pack_entry,
    unpack_deadline,
)
from django_realtime.layers.redis._reports import DropReports


class Queues:
    """Push to and pop from the lists of normal channels.

    Args:
        names: The layer's key names.
        reports: Where expired messages are reported.
        decode: msgpack's decoder.
        expiry: Seconds a message waits to be received.
        expiry_ms: ``expiry`` in whole milliseconds, for the lists' TTL.
    """

    def __init__(
        self,
        *,
        names: Names,
        reports: DropReports,
        decode: Callable[[Any], Any],
        expiry: float,
        expiry_ms: int,
    ) -> None:
        self._names = names
        self._reports = reports
        self._decode = decode
        self._expiry = expiry
        self._expiry_ms = expiry_ms

    async def push(
        self, conns: Connections, channel: str, payload: bytes, capacity: int
    ) -> None:
        """Append ``payload`` to ``channel``'s list.

        Raises:
            ChannelFull: The list holds ``capacity`` unexpired messages.
        """
        now = time.time()
        entry = pack_entry(now + self._expiry, payload)
        pushed, expired = await conns.send_script(
            keys=[self._names.queue_key(channel)],
            args=[now, entry, capacity, self._expiry_ms],
        )
        self._reports.expired(f"channel {channel!r}", expired)
        if not pushed:
            raise ChannelFull(
                f"Channel {channel!r} is full: its capacity is {capacity}."
            )

    async def pop(self, conns: Connections, channel: str) -> dict[str, Any]:
        """Wait for the next unexpired message of ``channel``'s list; return it.

        Cancelling loses no message (see :meth:`Connections.pop`).
        """
        key = self._names.queue_key(channel)
        while True:
            entry = await conns.pop(key)
            if entry is None:
                continue
            if unpack_deadline(entry) <= time.time():
                self._reports.expired(f"channel {channel!r}", 1)
                continue
            message: dict[str, Any] = self._decode(memoryview(entry)[ENTRY_HEADER:])
            return message
