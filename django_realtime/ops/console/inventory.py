"""The live connections of this process, as the ops page lists them.

:data:`inventory` follows connections through
:mod:`django_realtime.ops.lifecycle` (:func:`install` registers it): each
accepted connection gets a number, unique in the process, and the time it
opened. Nothing is done per message: the frame counts shown are the
``_frames_in`` / ``_frames_out`` integers a WebSocket consumer keeps anyway
(``None`` for a connection that keeps none: an HTTP stream request, a
multiplexed socket).

:func:`describe` turns a connection into the plain dict the page shows and
the control group carries (JSON and msgpack types only); :func:`close`
closes one, on the loop it runs on, with :data:`CLOSE_BY_OPERATOR`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.utils.functional import LazyObject, empty

from django_realtime.ops import lifecycle

__all__ = [
    "CLOSE_BY_OPERATOR",
    "CLOSE_REASON",
    "DAPHNE_CLOSE_BY_OPERATOR",
    "Inventory",
    "Record",
    "close",
    "describe",
    "install",
    "inventory",
    "transport_of",
    "user_of",
]

logger = logging.getLogger(__name__)

#: The close code of a connection an operator closed: 1008, policy
#: violation (realtime.js does not reconnect after it).
CLOSE_BY_OPERATOR = 1008
#: What 1008 becomes on daphne, which sends only 1000 and 3000-4999: 4003,
#: the package's "do not come back" (realtime.js does not reconnect either).
DAPHNE_CLOSE_BY_OPERATOR = 4003
#: The close reason sent with :data:`CLOSE_BY_OPERATOR`.
CLOSE_REASON = "closed by an operator"


@dataclass(slots=True)
class Record:
    """One live connection of this process.

    Attributes:
        id: The connection's number, unique in this process.
        connection: The consumer (or multiplexed socket).
        since: When it opened (seconds since the epoch).
        loop: The event loop it runs on.
    """

    id: int
    connection: Any
    since: float
    loop: asyncio.AbstractEventLoop


class Inventory:
    """The live connections of this process, in the order they opened."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._by_connection: dict[Any, Record] = {}
        self._by_id: dict[int, Record] = {}

    def opened(self, connection: Any) -> None:
        """Number ``connection`` and note when it opened."""
        record = Record(
            next(self._numbers), connection, time.time(), asyncio.get_running_loop()
        )
        self._by_connection[connection] = record
        self._by_id[record.id] = record

    def closed(self, connection: Any) -> None:
        """Forget ``connection``."""
        record = self._by_connection.pop(connection, None)
        if record is not None:
            self._by_id.pop(record.id, None)

    def records(self) -> list[Record]:
        """Return the live connections, oldest first."""
        return list(self._by_id.values())

    def get(self, number: int) -> Record | None:
        """Return the live connection numbered ``number``, or ``None``."""
        return self._by_id.get(number)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"<ops console inventory: {len(self)} connections>"


#: This process's inventory.
inventory = Inventory()


def install() -> None:
    """Follow connections from now on (idempotent)."""
    lifecycle.observe(inventory)


def user_of(scope: dict[str, Any]) -> str:
    """Return how the page names the user of ``scope``.

    A lazy user that was never loaded is not loaded here (that would query
    the database on the event loop).
    """
    user = scope.get("user")
    if user is None:
        return "(no user)"
    if isinstance(user, LazyObject):
        wrapped = user._wrapped
        if wrapped is empty:
            return "(not loaded)"
        user = wrapped
    if not getattr(user, "is_authenticated", False):
        return "anonymous"
    name = user.get_username() if hasattr(user, "get_username") else str(user)
    return f"{name} (#{user.pk})"


def transport_of(connection: Any) -> str:
    """Return the transport of ``connection``.

    ``websocket``, ``multiplex`` (a multiplexed WebSocket), ``sse``
    (server-sent events) or ``long-poll``; other HTTP requests are ``http``.
    """
    scope = connection.scope
    if scope.get("type") == "websocket":
        return "multiplex" if hasattr(connection, "topics") else "websocket"
    path = str(scope.get("path", ""))
    if path.endswith("/events"):
        return "sse"
    if path.endswith("/poll"):
        return "long-poll"
    return "http"


def streams_of(connection: Any) -> list[str]:
    """Return the streams ``connection`` subscribed to (none if it has none)."""
    session = getattr(connection, "_session", None)
    subscriptions = getattr(session, "subscriptions", None)
    return sorted(subscriptions) if subscriptions else []


def describe(record: Record) -> dict[str, Any]:
    """Return what the page shows of one connection, as plain data."""
    connection = record.connection
    scope = connection.scope
    transport = transport_of(connection)
    # A stream consumer served over HTTP has the counters but never the
    # frames (each request is its own exchange): none rather than zero.
    counted = transport == "websocket"
    return {
        "id": record.id,
        "user": user_of(scope),
        "path": str(scope.get("path", "?")),
        "transport": transport,
        "since": record.since,
        "frames_in": getattr(connection, "_frames_in", None) if counted else None,
        "frames_out": getattr(connection, "_frames_out", None) if counted else None,
        "streams": streams_of(connection),
    }


async def close(number: int) -> dict[str, Any] | None:
    """Close the live connection numbered ``number`` as an operator.

    The close waits for the handler the connection is running, as a
    drain's does, and goes out on the connection's own loop.

    Returns:
        The connection as :func:`describe` has it, if a close was sent;
        ``None`` if no such connection is open, or it was closing already.
    """
    record = inventory.get(number)
    if record is None:
        return None
    about = describe(record)
    if record.loop is asyncio.get_running_loop():
        sent = await _close(record.connection)
    elif record.loop.is_closed():
        sent = False
    else:
        future = asyncio.run_coroutine_threadsafe(
            _close(record.connection), record.loop
        )
        sent = await asyncio.wrap_future(future)
    return about if sent else None


async def _close(connection: Any) -> bool:
    waiting = connection._turn.take()
    if waiting is not None:
        await waiting
    try:
        if getattr(connection, "_close_sent", False):
            return False
        message = {
            "type": "websocket.close",
            "code": CLOSE_BY_OPERATOR,
            "reason": CLOSE_REASON,
        }
        try:
            await connection.base_send(message)
        except Exception as exc:
            # daphne refuses 1008; any server refuses a close once the
            # client's close has crossed ours.
            fallback = {"type": "websocket.close", "code": DAPHNE_CLOSE_BY_OPERATOR}
            try:
                await connection.base_send(fallback)
            except Exception as again:
                logger.debug("Could not close a connection: %r, %r", exc, again)
                return False
        return True
    finally:
        connection._turn.release()
