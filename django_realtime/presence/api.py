"""The process's presence tracker, and server code's view of the members.

The tracker follows the history store (``REALTIME["STREAM_STORE"]``): with
the Redis store, presence is kept in the same Redis and shared by every
process; with the PostgreSQL store, in its database, shared by every
process; with the SQLite store, in its file, shared by the processes of
the machine; with any other store it is kept in the process
(:class:`~.backends.MemoryPresence`), exact for one process only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeGuard

from django_realtime.presence.backends import MemoryPresence, PresenceBackend
from django_realtime.presence.tracker import Tracker, presence_options
from django_realtime.streams.positions import validate_stream_name
from django_realtime.streams.registry import get_stream_store
from django_realtime.streams.stores.base import HistoryStore
from django_realtime.streams.stores.memory import MemoryHistoryStore

if TYPE_CHECKING:
    from django_realtime.streams.stores.postgres import PostgresHistoryStore

__all__ = ["amembers", "get_tracker", "members", "ops_rows"]

#: The most streams one process lists on the ops page.
OPS_STREAMS = 50

logger = logging.getLogger("django_realtime.presence")

_tracker: Tracker | None = None


def _is_postgres(store: HistoryStore) -> TypeGuard[PostgresHistoryStore]:
    try:
        from django_realtime.streams.stores.postgres import PostgresHistoryStore
    except ImportError:  # No psycopg: not the PostgreSQL store.
        return False
    return isinstance(store, PostgresHistoryStore)


def _backend(store: HistoryStore) -> PresenceBackend:
    from django_realtime.streams.stores.redis import RedisHistoryStore

    if isinstance(store, RedisHistoryStore):
        from django_realtime.presence.redis import RedisPresence

        return RedisPresence(store._url, store.prefix)
    from django_realtime.streams.stores.sqlite import SQLiteHistoryStore

    if isinstance(store, SQLiteHistoryStore):
        from django_realtime.presence.sqlite import SQLitePresence

        return SQLitePresence(store.path)
    if _is_postgres(store):
        from django_realtime.presence.postgres import PostgresPresence

        return PostgresPresence(store.alias, timeout=store.timeout)
    if not isinstance(store, MemoryHistoryStore):
        logger.warning(
            "Presence is kept in this process: %r shares no presence between "
            "processes (use the Redis, PostgreSQL or SQLite store for that).",
            store,
        )
    return MemoryPresence()


def get_tracker() -> Tracker:
    """Return the process's tracker, for the current stream store."""
    global _tracker
    store = get_stream_store()
    if _tracker is None or _tracker.store is not store:
        _tracker = Tracker(store, _backend(store), presence_options())
    return _tracker


async def amembers(stream: str) -> dict[str, dict[str, Any]]:
    """Return the members of ``stream``: key -> ``info``, ``connections``, ``v``.

    Raises:
        ValueError: ``stream`` is not a valid stream name.
    """
    validate_stream_name(stream)
    _, found = await get_tracker().backend.snapshot(stream)
    return found


def members(stream: str) -> dict[str, dict[str, Any]]:
    """Return the members of ``stream``, from sync code (see :func:`amembers`)."""
    validate_stream_name(stream)
    _, found = get_tracker().backend.snapshot_sync(stream)
    return found


async def ops_rows() -> list[dict[str, Any]]:
    """Return this process's rows of the ops page's "Presence" section.

    One row per stream this process tracks members of (at most
    :data:`OPS_STREAMS`, the busiest first): its members and connections
    here, and its members in all processes as the backend has them.
    """
    tracker = _tracker
    if tracker is None:
        return []
    here: dict[str, tuple[set[str], int]] = {}
    for stream, key, _info in list(tracker.connections.values()):
        keys, count = here.setdefault(stream, (set(), 0))
        keys.add(key)
        here[stream] = (keys, count + 1)
    busiest = sorted(here.items(), key=lambda item: -item[1][1])[:OPS_STREAMS]
    rows = []
    for stream, (keys, count) in busiest:
        _, everyone = await tracker.backend.snapshot(stream)
        rows.append(
            {
                "stream": stream,
                "members here": len(keys),
                "connections here": count,
                "members in all processes": len(everyone),
            }
        )
    return rows
