"""Connection pools that shrink back once a burst of commands is over.

redis-py's pools keep every connection they open until the pool is closed:
one burst of concurrent commands (or of ``BLPOP`` receives) would hold as
many server connections, and file descriptors, for the rest of the process.
These pools close a connection once it has been idle for ``idle_timeout``
seconds, except the ``keep`` most recently used ones: when the burst is
over, a quiet process is back to ``keep`` command connections. A closed
connection stays in the pool, disconnected, and connects again if a later
burst needs it.

A connection opens, and the pool's timers run, in an empty
:class:`contextvars.Context`: asyncio keeps the context a socket was
opened in for as long as the socket is open, and the caller's (a
consumer's handler, say) would keep the caller's objects alive with it.

:func:`expired` is the rule, a pure function of its arguments;
:class:`ShrinkingPool` and :class:`ShrinkingBlockingPool` apply it to
redis-py's two asyncio pools through their public methods.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import AbstractConnection

_Key = TypeVar("_Key", bound=Hashable)

# How soon to look again when a connection was being handed out at the time.
_RETRY = 0.1


def expired(
    idle_since: Mapping[_Key, float], now: float, idle_timeout: float, keep: int
) -> tuple[list[_Key], float | None]:
    """Return the idle connections to close now, and when to look again.

    Args:
        idle_since: When each idle connection was last released.
        now: The current time, on the clock of ``idle_since``.
        idle_timeout: Seconds a connection may stay idle.
        keep: How many of the most recently released to keep whatever
            their idle time.

    Returns:
        The connections idle for ``idle_timeout`` or longer, the ``keep``
        most recent excepted, and the time at which the next of the others
        will be, or ``None`` if no other is left.
    """
    candidates = sorted(idle_since, key=idle_since.__getitem__, reverse=True)[keep:]
    due = [key for key in candidates if idle_since[key] + idle_timeout <= now]
    waiting = [idle_since[key] + idle_timeout for key in candidates if key not in due]
    return due, min(waiting, default=None)


class ShrinkingPool(ConnectionPool):
    """Close connections idle for ``idle_timeout`` seconds, keeping ``keep``.

    Args:
        idle_timeout: Seconds a connection may stay idle in the pool.
        keep: How many of the most recently used connections stay open
            whatever their idle time.
        **kwargs: The arguments of redis-py's pool.
    """

    def __init__(self, *, idle_timeout: float, keep: int = 1, **kwargs: Any) -> None:
        self.idle_timeout = idle_timeout
        self.keep = keep
        self._idle: dict[AbstractConnection, float] = {}
        self._acquiring = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        super().__init__(**kwargs)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """Return a connected connection, as redis-py's pool does."""
        # Until it returns, the connection it picks is not known: no closing.
        self._acquiring += 1
        try:
            # Untyped in redis-py: it returns the connection it hands out.
            connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs
            )
        finally:
            self._acquiring -= 1
        self._idle.pop(connection, None)
        return connection

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        """Connect ``connection`` if needed and check it, in an empty context."""
        if connection.is_connected:
            await super().ensure_connection(connection)
            return
        opening = super().ensure_connection(connection)
        await asyncio.get_running_loop().create_task(
            opening, context=contextvars.Context()
        )

    async def release(self, connection: AbstractConnection) -> None:
        """Take ``connection`` back; close it later if it stays idle."""
        await super().release(connection)
        self._idle[connection] = asyncio.get_running_loop().time()
        if self._timer is None and len(self._idle) > self.keep:
            # In release order: the first is the oldest, the first to expire.
            self._schedule(next(iter(self._idle.values())) + self.idle_timeout)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Disconnect the connections, as redis-py's pool does; stop closing."""
        self._stop()
        await super().disconnect(inuse_connections)

    def reset(self) -> None:
        """Forget every connection, as redis-py's pool does."""
        super().reset()  # type: ignore[no-untyped-call]
        self._stop()

    def _stop(self) -> None:
        self._idle.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._closing:
            task.cancel()

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(
            self._close_expired(), context=contextvars.Context()
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_expired(self) -> None:
        loop = asyncio.get_running_loop()
        due, next_at = expired(self._idle, loop.time(), self.idle_timeout, self.keep)
        for connection in due:
            if self._acquiring:
                # The connection being handed out may be this one: look again.
                next_at = loop.time() + _RETRY
                break
            if self._idle.pop(connection, None) is not None:
                # No command waits on it: no need to wait for the close.
                await connection.disconnect(nowait=True)
        if next_at is not None:
            self._schedule(next_at)

    def _schedule(self, when: float) -> None:
        """Look for expired connections at ``when`` (or earlier, if due)."""
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(when, self._on_timer, context=contextvars.Context())


class ShrinkingBlockingPool(ShrinkingPool, BlockingConnectionPool):
    """A :class:`ShrinkingPool` that waits for a free connection when full.

    ``max_connections`` commands run at once; more wait up to ``timeout``
    seconds for a connection, as with redis-py's ``BlockingConnectionPool``.
    """
