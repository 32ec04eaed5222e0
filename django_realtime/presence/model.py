"""Presence as data: members, their connections, and versioned changes.

Pure logic, no I/O. A stream's presence is a set of *connections*, each
belonging to a member (a user, named by a key) and to the process that
holds it. A member is present while it has at least one connection; its
record is its public info, its number of connections and the *version* of
its last change.

A connection belongs to one process at a time, its *owner*. The id of a
WebSocket connection names its process; that of a client of the HTTP
transports (``http/<client id>``) is the same on every process its
requests land on. Tracking a connection another process owns makes the
tracking process its owner, with no change; untracking it, or sweeping a
process, removes only what that process still owns.

Every change (a connection added or removed) takes the next version of the
stream, one counter per stream. Versions make diffs order-free: a client
applies a change to a member only if its version is newer than what it
knows, and ignores every change at or below the version of the snapshot it
started from. So diffs published by several processes may arrive in any
order, and a snapshot taken at any time after a subscription began needs
no exact position: whatever it already contains is skipped, whatever is
newer is applied (``docs/topics/presence.rst``).

:class:`Roster` is one stream's presence in one place (the in-memory
backend keeps one per stream; the Redis backend runs the same rules in Lua).
:class:`Batch` gathers a process's changes for one diff per stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_INFO_BYTES",
    "PRESENCE_PREFIX",
    "Batch",
    "Change",
    "InvalidMemberInfo",
    "Record",
    "Roster",
    "diff_data",
    "encode_info",
    "presence_stream",
    "tracked_stream",
]

#: What a presence stream's name starts with, before the tracked stream's.
PRESENCE_PREFIX = "presence:"

#: The default limit of a member's encoded public info, in bytes.
MAX_INFO_BYTES = 1024


class InvalidMemberInfo(ValueError):
    """A member's public info cannot be encoded, or is over the size limit."""


def presence_stream(stream: str) -> str:
    """Return the name of the stream that carries ``stream``'s presence."""
    return PRESENCE_PREFIX + stream


def tracked_stream(name: str) -> str | None:
    """Return the stream whose presence ``name`` carries; ``None``: not one."""
    if name.startswith(PRESENCE_PREFIX) and len(name) > len(PRESENCE_PREFIX):
        return name[len(PRESENCE_PREFIX) :]
    return None


def encode_info(info: Any, limit: int = MAX_INFO_BYTES) -> str:
    """Return ``info`` as compact JSON text.

    Raises:
        InvalidMemberInfo: ``info`` is not JSON-serialisable, or its text
            is over ``limit`` bytes (UTF-8).
    """
    try:
        text = json.dumps(info, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMemberInfo(
            f"Expected member info that JSON can encode, got "
            f"{type(info).__name__}: {exc}"
        ) from None
    size = len(text.encode())
    if size > limit:
        raise InvalidMemberInfo(
            f"Expected member info of at most {limit} bytes of JSON, got {size}."
        )
    return text


@dataclass(frozen=True, slots=True)
class Record:
    """A member as subscribers see it.

    Attributes:
        info: The member's public info, as JSON text.
        connections: How many connections it has (0: it left).
        version: The stream's version at its last change.
    """

    info: str
    connections: int
    version: int

    def as_json(self) -> dict[str, Any]:
        """Return the record as it is sent: ``info``, ``connections``, ``v``."""
        return {
            "info": json.loads(self.info),
            "connections": self.connections,
            "v": self.version,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """A member's record after one change (``connections == 0``: it left)."""

    key: str
    record: Record


class Roster:
    """One stream's presence: connections, members and the version counter."""

    def __init__(self) -> None:
        #: Connection id -> (member key, process id).
        self.connections: dict[str, tuple[str, str]] = {}
        #: Member key -> record (only members with connections).
        self.members: dict[str, Record] = {}
        self.version = 0

    def track(
        self, conn: str, key: str, info: str, process: str, *, take: bool = True
    ) -> Change | None:
        """Add connection ``conn`` of member ``key``, owned by ``process``.

        ``None``: it was there (``take``: now owned by ``process``).
        """
        held = self.connections.get(conn)
        if held is not None:
            if take:
                self.connections[conn] = (held[0], process)
            return None
        self.connections[conn] = (key, process)
        old = self.members.get(key)
        self.version += 1
        record = Record(info, (old.connections if old else 0) + 1, self.version)
        self.members[key] = record
        return Change(key, record)

    def untrack(self, conn: str, process: str | None = None) -> Change | None:
        """Remove connection ``conn``; ``None``: it was not there.

        With ``process``, only if ``process`` owns it.
        """
        entry = self.connections.get(conn)
        if entry is None or (process is not None and entry[1] != process):
            return None
        del self.connections[conn]
        key = entry[0]
        old = self.members[key]
        self.version += 1
        record = Record(old.info, old.connections - 1, self.version)
        if record.connections:
            self.members[key] = record
        else:
            del self.members[key]
        return Change(key, record)

    def drop_process(self, process: str) -> list[Change]:
        """Remove every connection of ``process``; return the changes."""
        gone = [c for c, (_, p) in self.connections.items() if p == process]
        return [change for c in gone if (change := self.untrack(c)) is not None]

    def sync_process(
        self, process: str, connections: dict[str, tuple[str, str]]
    ) -> list[Change]:
        """Make ``process``'s connections exactly ``connections``; return the changes.

        ``connections`` maps a connection id to its member key and info;
        one that another process owns stays with it.
        """
        changes = [
            change
            for c, (_, p) in list(self.connections.items())
            if p == process and c not in connections
            if (change := self.untrack(c)) is not None
        ]
        for conn, (key, info) in connections.items():
            change = self.track(conn, key, info, process, take=False)
            if change is not None:
                changes.append(change)
        return changes


class Batch:
    """Changes waiting to be published, the newest per stream and member."""

    def __init__(self) -> None:
        self.streams: dict[str, dict[str, Record]] = {}

    def __bool__(self) -> bool:
        return bool(self.streams)

    def add(self, stream: str, changes: list[Change]) -> None:
        """Keep ``changes`` of ``stream``, each member's newest version."""
        members = self.streams.setdefault(stream, {})
        for change in changes:
            old = members.get(change.key)
            if old is None or old.version < change.record.version:
                members[change.key] = change.record
        if not members:
            del self.streams[stream]

    def take(self) -> dict[str, dict[str, Record]]:
        """Return what waits and forget it."""
        taken, self.streams = self.streams, {}
        return taken


def diff_data(records: dict[str, Record]) -> dict[str, Any]:
    """Return the publication of a diff: ``joins`` (records) and ``leaves`` (versions).

    A join of a member the client already lists updates its record.
    """
    return {
        "type": "presence.diff",
        "joins": {k: r.as_json() for k, r in records.items() if r.connections},
        "leaves": {k: r.version for k, r in records.items() if not r.connections},
    }
