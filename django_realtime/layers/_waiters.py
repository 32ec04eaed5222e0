"""Receivers waiting on channels: which one a new message wakes.

Bookkeeping only, shared by the in-memory layer and the Redis layer's
process-local channels: it neither creates nor awaits futures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Waiters(dict[str, list[asyncio.Future[None]]]):
    """Map each channel to the futures of its waiting receivers, oldest first.

    A dict, so that ``channel in waiters`` (asked on every send) and
    ``if waiters:`` stay the dict's own fast operations; a channel with no
    waiting receiver has no key. Each value is a list, not a deque: there is
    one receiver per channel in the common case, and an empty deque alone
    costs ~600 bytes per connection.
    """

    __slots__ = ()

    def add(self, channel: str, waiter: asyncio.Future[None]) -> None:
        """Put ``waiter`` last in line on ``channel``."""
        waiters = self.get(channel)
        if waiters is None:
            self[channel] = [waiter]
        else:
            waiters.append(waiter)

    def wake(self, channel: str) -> None:
        """Wake the longest waiting receiver on ``channel`` that can still run.

        Futures already done, and those of a closed event loop (an earlier
        test's), are dropped on the way: the latter can never run, and
        setting their result would schedule callbacks on a dead loop.
        """
        waiters = self.get(channel)
        if waiters is None:
            return
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)
                break
        if not waiters:
            del self[channel]

    def wake_each(self, channels: Iterable[str]) -> None:
        """Wake one receiver on each of ``channels`` that has any waiting."""
        for channel in channels:
            if channel in self:
                self.wake(channel)

    def forget(self, channel: str, waiter: asyncio.Future[None]) -> None:
        """Take ``waiter`` out of line: its receive was cancelled.

        If it had been woken already, a message is queued that it will not
        take, so the next receiver in line is woken instead.
        """
        if not waiter.cancelled():
            self.wake(channel)
            return
        waiters = self.get(channel)
        if waiters is None:
            return
        try:
            waiters.remove(waiter)
        except ValueError:
            return
        if not waiters:
            del self[channel]
