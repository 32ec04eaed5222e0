"""Messages a process has taken from the file, and the receivers waiting.

The engine thread takes messages for channels that have waiting receivers
and hands them to the :class:`Inbox`; receivers, on any event loop, take
them from there. Taking and starting to wait are one step under a lock, so
a message handed over between the two is never missed; a receiver is woken
with no value and takes its message itself, so a receive cancelled after
it was woken leaves the message for the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Any

from django_realtime.exceptions import GroupsExpired
from django_realtime.layers._core import LayerStats

__all__ = ["Inbox"]

logger = logging.getLogger("django_realtime.layers.sqlite")

Message = dict[str, Any]


class Inbox:
    """Hold taken messages per channel and wake receivers on their loops.

    Args:
        stats: The layer's counters (``received`` and ``expired_messages``
            are counted here).
    """

    def __init__(self, stats: LayerStats) -> None:
        self.stats = stats
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[float, Message]]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._evicted: dict[str, tuple[str, ...]] = {}
        # Normal channels waited on here (few: a worker's channels), kept
        # until a look finds no receiver waiting on them.
        self._normal: set[str] = set()

    def take_or_wait(
        self,
        channel: str,
        now: float,
        waiter: asyncio.Future[None],
        normal: bool = False,
    ) -> Message | None:
        """Return the next live message on ``channel``, or queue ``waiter``.

        ``normal`` says that ``channel`` is a normal channel, which any
        process may read (not one of this process's own).

        Raises:
            GroupsExpired: ``channel`` was taken out of its groups for
                holding expired messages (raised once).
        """
        with self._lock:
            groups = self._evicted.pop(channel, None)
            if groups is not None:
                raise GroupsExpired(channel, groups)
            queue = self._queues.get(channel)
            while queue:
                deadline, message = queue.popleft()
                if deadline > now:
                    if not queue:
                        del self._queues[channel]
                    self.stats.received += 1
                    return message
                self.stats.expired_messages += 1
            self._queues.pop(channel, None)
            self._waiters.setdefault(channel, []).append(waiter)
            if normal:
                self._normal.add(channel)
            return None

    def forget(self, channel: str, waiter: asyncio.Future[None]) -> None:
        """Take a cancelled receive's ``waiter`` out of line.

        If it had been woken already, the message it would have taken is
        offered to the next receiver in line.
        """
        with self._lock:
            waiters = self._waiters.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]
                return
            if self._queues.get(channel):
                self._wake_locked(channel)

    @property
    def waiting(self) -> bool:
        """Return whether any receiver waits."""
        return bool(self._waiters)

    def waiting_normal(self) -> list[str]:
        """Return the normal channels that receivers wait on."""
        with self._lock:
            self._normal = {c for c in self._normal if c in self._waiters}
            return list(self._normal)

    def lacking(self, channels: set[str]) -> dict[str, int]:
        """Return how many messages the receivers waiting on ``channels`` lack."""
        with self._lock:
            wanted = {}
            for channel in channels:
                waiters = self._waiters.get(channel)
                if waiters:
                    lacking = len(waiters) - len(self._queues.get(channel, ()))
                    if lacking > 0:
                        wanted[channel] = lacking
            return wanted

    def deliver(
        self,
        messages: list[tuple[str, float, Message]],
        evicted: dict[str, tuple[str, ...]],
    ) -> None:
        """Queue taken messages and wake a receiver for each (any thread)."""
        with self._lock:
            self._evicted.update(evicted)
            for channel, deadline, message in messages:
                queue = self._queues.get(channel)
                if queue is None:
                    queue = self._queues[channel] = deque()
                queue.append((deadline, message))
            for channel in {channel for channel, _, _ in messages} | set(evicted):
                for _ in range(len(self._queues.get(channel, ())) or 1):
                    if not self._wake_locked(channel):
                        break

    def discard(self, channel: str) -> int:
        """Drop what was taken for ``channel``; return how many messages."""
        with self._lock:
            self._evicted.pop(channel, None)
            queue = self._queues.pop(channel, None)
            return len(queue) if queue else 0

    def clear(self) -> None:
        """Drop every taken message (waiting receivers keep waiting)."""
        with self._lock:
            self._queues.clear()
            self._evicted.clear()

    # Internals

    def _wake_locked(self, channel: str) -> bool:
        waiters = self._waiters.get(channel)
        while waiters:
            waiter = waiters.pop(0)
            if not waiters:
                del self._waiters[channel]
            if waiter.done():
                continue
            try:
                waiter.get_loop().call_soon_threadsafe(self._resolve, channel, waiter)
            except RuntimeError:
                continue  # Its loop has closed: that receive can never run.
            return True
        return False

    def _resolve(self, channel: str, waiter: asyncio.Future[None]) -> None:
        # On the waiter's loop. Cancelled in the meantime: pass the turn on.
        if waiter.done():
            with self._lock:
                if self._queues.get(channel):
                    self._wake_locked(channel)
            return
        waiter.set_result(None)
