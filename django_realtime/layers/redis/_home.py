"""The event loop a Redis layer belongs to, and that loop's connections.

redis-py's asyncio connections belong to the loop that opened them, so a
layer has one *home* loop at a time. A call made on the home loop uses its
:class:`~django_realtime.layers.redis._connections.Connections`; a call
made on another thread's loop runs on the home loop while that loop runs;
once the home loop has stopped or closed, the next loop to call becomes
home and opens connections of its own. A home loop's connections are
closed when it shuts its async generators down (``asyncio.run``,
``asyncio.Runner``, pytest-asyncio), while it still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, TypeVar

from django_realtime.layers.redis._connections import Connections

T = TypeVar("T")


class HomeLoop:
    """Keep a layer's connections on one event loop at a time.

    Args:
        connect: Open the connections of a new home loop; called on it.

    Attributes:
        loop: The home loop, or ``None`` before the first call and after
            :meth:`close`.
        connections: The home loop's connections, or ``None`` with it.
    """

    def __init__(self, connect: Callable[[], Connections]) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: Connections | None = None
        self._connect = connect
        self._guard: AsyncGenerator[None, None] | None = None

    def here(self) -> Connections | None:
        """Return the connections if the running loop is home, else ``None``."""
        return self.connections if self.loop is asyncio.get_running_loop() else None

    async def settle(self) -> Connections | None:
        """Make the running loop home; return ``None`` to delegate instead.

        Calls are delegated (see :meth:`delegate`) while another thread's
        home loop runs. A home loop that has stopped or closed is replaced
        by the running one, which opens new connections.
        """
        loop = asyncio.get_running_loop()
        home = self.loop
        if home is not None and home.is_running() and not home.is_closed():
            return None
        self._abandon()
        self.loop = loop
        connections = self.connections = self._connect()
        # An async generator started on the loop is closed by the loop's
        # shutdown_asyncgens() while the loop still runs: the moment to
        # close our connections.
        guard = self._guard = self._guard_loop(loop)
        await anext(guard)
        return connections

    async def delegate(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the home loop and return its result."""
        home = self.loop
        if home is None:  # the home loop ended meanwhile: run here
            return await coroutine
        future = asyncio.run_coroutine_threadsafe(coroutine, home)
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Close the home loop's connections (on the home loop, if it runs).

        The next call that needs connections opens new ones.
        """
        home = self.loop
        if home is None:
            return
        if home is not asyncio.get_running_loop():
            if home.is_running() and not home.is_closed():
                return await self.delegate(self.close())
            self._abandon()
            return
        guard, self._guard = self._guard, None
        await self._release()
        if guard is not None:
            await guard.aclose()

    async def _guard_loop(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self.loop is loop:
                self._guard = None
                await self._release()

    def _abandon(self) -> None:
        """Forget the connections of a home loop that has ended."""
        guard, self._guard = self._guard, None
        connections, self.connections = self.connections, None
        self.loop = None
        if guard is not None:
            # Finish the generator here: its finally does nothing now that
            # the loop is not home, and a dead loop cannot finalise it.
            closing = guard.aclose()
            with contextlib.suppress(StopIteration):
                closing.send(None)
        if connections is not None:
            connections.abandon()

    async def _release(self) -> None:
        """Close the home loop's connections."""
        connections, self.connections = self.connections, None
        self.loop = None
        if connections is not None:
            await connections.close()
