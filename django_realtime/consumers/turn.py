"""One handler at a time per consumer, whichever source its message came from.

A consumer receives messages from its connection, from the channel layer,
and from a drain closing it; each runs its handler while holding the
consumer's :class:`Turn`. An uncontended turn costs no await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

__all__ = ["Turn"]


class Turn:
    """Let one of a consumer's message sources run a handler at a time.

    :meth:`take` takes a free turn at once (no await) or returns what to
    await for it; :meth:`release` hands the turn to the longest waiter, or
    frees it.
    """

    __slots__ = ("busy", "waiters")

    def __init__(self) -> None:
        self.busy = False
        self.waiters: list[asyncio.Future[None]] = []

    def take(self) -> Awaitable[None] | None:
        """Take the turn if it is free; otherwise return an awaitable for it."""
        if self.busy:
            return self._wait()
        self.busy = True
        return None

    async def _wait(self) -> None:
        """Wait until the turn is handed to us."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed the turn, but cancelled before taking it: pass it on.
                self.release()
            else:
                self.waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the turn to the longest waiter, or free it."""
        while self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy = False
