"""Where a stream's presence is kept: the interface and the in-process backend.

A backend keeps every stream's :class:`~.model.Roster` where all the
processes that serve the stream can reach it, and applies changes
atomically, each returning the versioned :class:`~.model.Change` records
that the caller publishes. :class:`MemoryPresence` keeps them in the
process (with the in-memory history store); the Redis backend
(:mod:`django_realtime.presence.redis`) keeps them in Redis beside the
Redis store's streams.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

from django_realtime.presence.model import Change, Roster

__all__ = ["MemoryPresence", "PresenceBackend", "Snapshot"]

#: A stream's version and its members at one instant, as they are sent:
#: key -> ``{"info": ..., "connections": n, "v": version}``.
Snapshot = tuple[int, dict[str, dict[str, Any]]]


class PresenceBackend(abc.ABC):
    """Keep the presence of streams; every method is one atomic step."""

    #: Whether processes other than this one may share the backend.
    shared = False

    @abc.abstractmethod
    async def track(
        self, stream: str, conn: str, key: str, info: str, process: str
    ) -> list[Change]:
        """Add a connection of member ``key`` (public ``info``) held by ``process``.

        A connection another process holds becomes ``process``'s, with no
        change (:class:`~.model.Roster`).
        """

    @abc.abstractmethod
    async def untrack(
        self, stream: str, conn: str, process: str | None = None
    ) -> list[Change]:
        """Remove connection ``conn`` of ``stream`` (``process``: if it owns it)."""

    @abc.abstractmethod
    async def sync(
        self, stream: str, process: str, connections: dict[str, tuple[str, str]]
    ) -> list[Change]:
        """Make ``process``'s connections of ``stream`` exactly ``connections``.

        One of ``connections`` that another process holds stays with it.
        """

    @abc.abstractmethod
    async def snapshot(self, stream: str) -> Snapshot:
        """Return ``stream``'s version and members."""

    @abc.abstractmethod
    def snapshot_sync(self, stream: str) -> Snapshot:
        """Return ``stream``'s version and members, from sync code."""

    async def published(  # noqa: B027 (nothing to forget in one process)
        self, stream: str, versions: dict[str, int]
    ) -> None:
        """Forget the changes of ``stream`` now published (member -> version).

        A shared backend keeps every change until then, so that the sweep
        of a process that died before publishing its changes publishes them.
        """

    async def unpublished(self, stream: str) -> list[Change]:
        """Return the changes of ``stream`` not known to be published."""
        return []

    async def heartbeat(self, process: str, streams: set[str]) -> bool:
        """Say that ``process`` lives and holds connections of ``streams``.

        Returns whether the backend did not know it (its connections may
        have been swept meanwhile: the caller syncs them again).
        """
        return False

    async def sweep(self, process: str, expiry: float) -> dict[str, list[Change]]:
        """Remove the connections of processes silent for over ``expiry`` seconds.

        ``process`` is the caller's own, never swept. Returns the changes
        by stream.
        """
        return {}

    async def close(self) -> None:  # noqa: B027 (may hold nothing)
        """Close the backend's connections on the running loop."""


class MemoryPresence(PresenceBackend):
    """Keep presence in this process: for the in-memory and one-process stores."""

    def __init__(self) -> None:
        self._rosters: dict[str, Roster] = {}
        # The sync twin reads from other threads.
        self._lock = threading.Lock()

    def _roster(self, stream: str) -> Roster:
        roster = self._rosters.get(stream)
        if roster is None:
            roster = self._rosters[stream] = Roster()
        return roster

    async def track(
        self, stream: str, conn: str, key: str, info: str, process: str
    ) -> list[Change]:
        with self._lock:
            change = self._roster(stream).track(conn, key, info, process)
        return [] if change is None else [change]

    async def untrack(
        self, stream: str, conn: str, process: str | None = None
    ) -> list[Change]:
        with self._lock:
            change = self._roster(stream).untrack(conn, process)
        return [] if change is None else [change]

    async def sync(
        self, stream: str, process: str, connections: dict[str, tuple[str, str]]
    ) -> list[Change]:
        with self._lock:
            return self._roster(stream).sync_process(process, connections)

    async def snapshot(self, stream: str) -> Snapshot:
        return self.snapshot_sync(stream)

    def snapshot_sync(self, stream: str) -> Snapshot:
        with self._lock:
            roster = self._rosters.get(stream)
            if roster is None:
                return 0, {}
            return roster.version, {
                key: record.as_json() for key, record in roster.members.items()
            }
