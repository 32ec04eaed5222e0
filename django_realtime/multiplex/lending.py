"""Who reads a multiplexed socket that a consumer stopped reading: one timer per loop.

A consumer that reads its socket (see :mod:`django_realtime.multiplex.socket`)
stops reading to handle the frame it read. Most handlers come back to
``receive()`` at once; one that waits (a query, a thread, a slow call)
must not leave the socket unread, so the socket's own task reads once the
consumer has been away for a while. Rather than a timer per frame, each
socket that a reader stopped is noted with its event loop's
:class:`Lending`, whose one timer ticks every :data:`LEND` seconds while
any socket is noted: a busy process pays a tick every few milliseconds,
not a timer (and a wake-up of the event loop) a frame, and an idle one
nothing.

A socket noted is checked at the first tick at least one whole period
after it was noted (between one and two periods): if nobody reads it then,
its own task is woken to read. The period is the price of that saving:
while one topic's handler waits, frames of the socket's other topics may
wait up to two periods more than on sockets of their own.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

__all__ = ["LEND", "Lending", "lending"]

#: Seconds between the ticks of a loop's :class:`Lending`: shorter wakes
#: a busy process's event loop more often for nothing.
LEND = 0.005


class _Socket(Protocol):
    """What :class:`Lending` needs of a multiplexed socket."""

    lent_at: int

    def check_reader(self) -> None:
        """Wake the socket's task to read if nobody reads it."""


class Lending:
    """The sockets of one event loop that a reader stopped, and their timer.

    Args:
        loop: The event loop of the sockets.
    """

    __slots__ = ("_loop", "noted", "ticks", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.timer: asyncio.TimerHandle | None = None
        self.noted: set[_Socket] = set()
        self.ticks = 0

    def note(self, socket: _Socket) -> None:
        """Check ``socket`` at a tick a whole period from now."""
        socket.lent_at = self.ticks
        self.noted.add(socket)
        if self.timer is None:
            self.arm()

    def arm(self) -> None:
        """Start the ticks (there is none pending)."""
        self.timer = self._loop.call_later(LEND, self._tick)

    def forget(self, socket: _Socket) -> None:
        """Check ``socket`` no more (it ended)."""
        self.noted.discard(socket)

    def _tick(self) -> None:
        self.timer = None
        previous = self.ticks
        self.ticks = previous + 1
        noted = self.noted
        due = [socket for socket in noted if socket.lent_at != previous]
        for socket in due:
            noted.discard(socket)
            socket.check_reader()
        if noted:
            self.arm()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Lending] = (
    weakref.WeakKeyDictionary()
)


def lending(loop: asyncio.AbstractEventLoop) -> Lending:
    """Return the :class:`Lending` of ``loop``."""
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = Lending(loop)
    return found
