"""Messages that reached this process, and the receivers waiting for them.

The layer's I/O thread puts messages here as the broker delivers them;
receivers, on any event loop, take them. Taking and starting to wait are
one step under a lock, so a message put between the two is never missed;
a receiver is woken with no value and takes its message itself, so a
receive cancelled after it was woken leaves the message for the next one.

A message of a normal channel comes with an ``ack``: the broker holds it
for this process until it is taken (or dropped), so that a process that
ends before taking it gives it back to the queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from django_realtime.layers._core import LayerStats

__all__ = ["Inbox"]

Message = dict[str, Any]
# Settles a message the broker holds for this process: ack(False) takes
# it, ack(True) gives it back to its queue.
Ack = Callable[[bool], None] | None

# Seconds between two sweeps of expired messages nobody came to take.
_SWEEP_INTERVAL = 10.0


class Inbox:
    """Hold delivered messages per channel and wake receivers on their loops.

    Args:
        stats: The layer's counters (``received`` and ``expired_messages``
            are counted here).
    """

    def __init__(self, stats: LayerStats) -> None:
        self.stats = stats
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[float, Message, Ack]]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._next_sweep = time.monotonic() + _SWEEP_INTERVAL

    def take_or_wait(
        self, channel: str, now: float, waiter: asyncio.Future[None]
    ) -> Message | None:
        """Return the next live message on ``channel``, or queue ``waiter``."""
        with self._lock:
            queue = self._queues.get(channel)
            while queue:
                deadline, message, ack = queue.popleft()
                if ack is not None:
                    ack(False)
                if deadline > now:
                    if not queue:
                        del self._queues[channel]
                    self.stats.received += 1
                    return message
                self.stats.expired_messages += 1
            self._queues.pop(channel, None)
            self._waiters.setdefault(channel, []).append(waiter)
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

    def put(
        self,
        channel: str,
        deadline: float,
        message: Message,
        capacity: int | None = None,
        ack: Ack = None,
    ) -> bool:
        """Queue ``message`` on ``channel`` and wake a receiver (any thread).

        Returns ``False``, queueing nothing, if ``channel`` already holds
        ``capacity`` messages.
        """
        with self._lock:
            if time.monotonic() >= self._next_sweep:
                self._sweep_locked()
            queue = self._queues.get(channel)
            if queue is None:
                queue = self._queues[channel] = deque()
            elif capacity is not None and len(queue) >= capacity:
                return False
            queue.append((deadline, message, ack))
            self._wake_locked(channel)
            return True

    def waiting(self, channel: str) -> bool:
        """Return whether a receiver waits on ``channel``."""
        return channel in self._waiters

    def discard(self, channel: str) -> int:
        """Drop what was delivered for ``channel``; return how many messages."""
        with self._lock:
            queue = self._queues.pop(channel, None)
            if not queue:
                return 0
            for _, _, ack in queue:
                if ack is not None:
                    ack(False)
            return len(queue)

    def give_back(self, channel: str) -> int:
        """Give the broker back what it holds for ``channel``, unless awaited.

        Returns how many messages were given back (none if a receiver waits).
        """
        with self._lock:
            queue = self._queues.get(channel)
            if not queue or channel in self._waiters:
                return 0
            kept: deque[tuple[float, Message, Ack]] = deque()
            given = 0
            for entry in queue:
                if entry[2] is None:
                    kept.append(entry)
                else:
                    entry[2](True)
                    given += 1
            if kept:
                self._queues[channel] = kept
            else:
                del self._queues[channel]
            return given

    def drop_unacked(self) -> int:
        """Drop the messages the broker still holds for this process.

        Called when the connection is lost: the broker gives those messages
        back to their queues, and another receive will get them again.
        Returns how many were dropped here.
        """
        dropped = 0
        with self._lock:
            for channel, queue in list(self._queues.items()):
                kept = deque(entry for entry in queue if entry[2] is None)
                dropped += len(queue) - len(kept)
                if kept:
                    self._queues[channel] = kept
                else:
                    del self._queues[channel]
        return dropped

    def clear(self) -> None:
        """Drop every delivered message (waiting receivers keep waiting)."""
        with self._lock:
            for queue in self._queues.values():
                for _, _, ack in queue:
                    if ack is not None:
                        ack(False)
            self._queues.clear()

    # Internals

    def _sweep_locked(self) -> None:
        """Drop expired messages that no receiver came for.

        A channel whose consumer has gone (without ``discard_channel()``, or
        with messages arriving after it) would otherwise keep them forever.
        """
        self._next_sweep = time.monotonic() + _SWEEP_INTERVAL
        now = time.time()
        for channel, queue in list(self._queues.items()):
            while queue and queue[0][0] <= now:
                _, _, ack = queue.popleft()
                if ack is not None:
                    ack(False)
                self.stats.expired_messages += 1
            if not queue:
                del self._queues[channel]

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
