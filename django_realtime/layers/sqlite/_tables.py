"""The SQLite layer's tables and the statements that keep its rules.

Every function here runs inside a transaction the caller opened on a
:class:`sqlite3.Connection` and takes ``now`` (wall-clock seconds, shared
by every process on the machine). The rules are the in-memory layer's
(:mod:`django_realtime.layers._core`), kept in the file so that every
process sees one state:

- A message is live while ``now < deadline``; an expired message is never
  returned, and does not count towards its channel's capacity.
- A channel holds at most its capacity of live messages.
- A membership is live while ``now < expires_at``; ``group_add`` renews it.
- A process-local channel (``new_channel()`` names) is read only by the
  process that made it: its rows carry that process's id as ``target``.
  Normal channels have the empty target and are read by any process.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django_realtime.exceptions import ChannelFull
from django_realtime.layers._core import GroupSendResult

__all__ = [
    "PROCESS_ID_LENGTH",
    "Claim",
    "claim",
    "count_live",
    "create_tables",
    "forget_process",
    "group_send",
    "insert",
    "target_of",
]

#: Hexadecimal characters of a process id, just before a channel's ``!``.
PROCESS_ID_LENGTH = 12

_PROCESS_ID = re.compile(rf"[0-9a-f]{{{PROCESS_ID_LENGTH}}}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drt_layer_message (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    channel TEXT NOT NULL,
    deadline REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS drt_layer_message_queue
    ON drt_layer_message (target, channel, id);
CREATE INDEX IF NOT EXISTS drt_layer_message_deadline
    ON drt_layer_message (deadline);
CREATE TABLE IF NOT EXISTS drt_layer_membership (
    grp TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, channel)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS drt_layer_membership_channel
    ON drt_layer_membership (channel);
CREATE INDEX IF NOT EXISTS drt_layer_membership_target
    ON drt_layer_membership (target);
"""


def create_tables(connection: sqlite3.Connection) -> None:
    """Create the layer's tables and indexes if they are missing."""
    connection.executescript(_SCHEMA)


def target_of(channel: str) -> str:
    """Return the id of the process that reads ``channel``, or ``""``.

    A name with a process id of :data:`PROCESS_ID_LENGTH` hexadecimal
    characters just before its ``!`` belongs to that process; any other name
    is a normal channel, read by any process.
    """
    bang = channel.find("!")
    if bang < PROCESS_ID_LENGTH:
        return ""
    process = channel[bang - PROCESS_ID_LENGTH : bang]
    return process if _PROCESS_ID.fullmatch(process) else ""


def count_live(
    connection: sqlite3.Connection, target: str, channel: str, now: float
) -> int:
    """Return how many live messages wait on ``channel``."""
    row = connection.execute(
        "SELECT COUNT(*) FROM drt_layer_message "
        "WHERE target = ? AND channel = ? AND deadline > ?",
        (target, channel, now),
    ).fetchone()
    return int(row[0])


def insert(
    connection: sqlite3.Connection,
    channel: str,
    payload: bytes,
    *,
    now: float,
    expiry: float,
    capacity: int,
) -> str:
    """Queue ``payload`` on ``channel``; return the channel's target.

    Raises:
        ChannelFull: ``channel`` holds ``capacity`` live messages.
    """
    target = target_of(channel)
    size = count_live(connection, target, channel, now)
    if size >= capacity:
        raise ChannelFull(
            f"Channel {channel!r} is full: it holds {size} messages, its "
            f"capacity is {capacity}."
        )
    connection.execute(
        "INSERT INTO drt_layer_message (target, channel, deadline, payload) "
        "VALUES (?, ?, ?, ?)",
        (target, channel, now + expiry, payload),
    )
    return target


def group_send(
    connection: sqlite3.Connection,
    group: str,
    payload: bytes,
    *,
    now: float,
    expiry: float,
    capacity_of: Callable[[str], int],
) -> tuple[GroupSendResult, set[str]]:
    """Queue ``payload`` on every live member of ``group`` that has room.

    Returns:
        Where the message went, and the targets of the channels it reached.
    """
    rows = connection.execute(
        "SELECT m.channel, m.target, (SELECT COUNT(*) FROM drt_layer_message q "
        "WHERE q.target = m.target AND q.channel = m.channel AND q.deadline > ?) "
        "FROM drt_layer_membership m WHERE m.grp = ? AND m.expires_at > ?",
        (now, group, now),
    ).fetchall()
    delivered: list[str] = []
    full: list[str] = []
    targets: set[str] = set()
    values: list[tuple[str, str, float, bytes]] = []
    deadline = now + expiry
    for channel, target, size in rows:
        if size >= capacity_of(channel):
            full.append(channel)
            continue
        delivered.append(channel)
        targets.add(target)
        values.append((target, channel, deadline, payload))
    connection.executemany(
        "INSERT INTO drt_layer_message (target, channel, deadline, payload) "
        "VALUES (?, ?, ?, ?)",
        values,
    )
    return GroupSendResult(delivered, full), targets


def group_add(
    connection: sqlite3.Connection, group: str, channel: str, expires_at: float
) -> None:
    """Add ``channel`` to ``group`` until ``expires_at``, or renew it."""
    connection.execute(
        "INSERT INTO drt_layer_membership (grp, channel, target, expires_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (grp, channel) "
        "DO UPDATE SET expires_at = excluded.expires_at",
        (group, channel, target_of(channel), expires_at),
    )


def group_discard(connection: sqlite3.Connection, group: str, channel: str) -> None:
    """Remove ``channel`` from ``group``, if it is a member."""
    connection.execute(
        "DELETE FROM drt_layer_membership WHERE grp = ? AND channel = ?",
        (group, channel),
    )


@dataclass(slots=True)
class Claim:
    """What one process took from the file for its waiting receivers.

    Attributes:
        messages: ``(channel, deadline, payload)``, oldest first.
        expired: Channel -> how many of its messages were found expired.
        evicted: Channel -> the groups it was taken out of, because it was
            found holding expired messages (its reader is too slow or gone).
    """

    messages: list[tuple[str, float, bytes]]
    expired: dict[str, int]
    evicted: dict[str, tuple[str, ...]]


def claim(
    connection: sqlite3.Connection,
    process_id: str,
    normal: Sequence[str],
    lacking: Callable[[set[str]], dict[str, int]],
    now: float,
) -> Claim:
    """Take, and delete, the oldest messages that waiting receivers lack.

    Looks at this process's channels and at the normal channels in
    ``normal`` (those with receivers waiting here); ``lacking`` says, for
    the channels found holding messages, how many each one's receivers
    lack. A channel whose oldest message has expired has all its expired
    messages deleted, reported, and leaves its groups.
    """
    # SQLite returns the deadline of the row that MIN(id) picked.
    heads: list[tuple[str, str, int, float]] = connection.execute(
        "SELECT target, channel, MIN(id), deadline FROM drt_layer_message "
        "WHERE target = ? GROUP BY channel",
        (process_id,),
    ).fetchall()
    for chunk in _chunks(normal, 500):
        marks = ",".join("?" * len(chunk))
        heads += connection.execute(
            "SELECT target, channel, MIN(id), deadline FROM drt_layer_message "
            f"WHERE target = '' AND channel IN ({marks}) GROUP BY channel",
            chunk,
        ).fetchall()
    if not heads:
        return Claim([], {}, {})
    wanted = lacking({channel for _, channel, _, _ in heads})
    taken: list[int] = []
    expired: dict[str, int] = {}
    evicted: dict[str, tuple[str, ...]] = {}
    for target, channel, head, deadline in heads:
        if deadline <= now:
            expired[channel] = connection.execute(
                "DELETE FROM drt_layer_message "
                "WHERE target = ? AND channel = ? AND deadline <= ?",
                (target, channel, now),
            ).rowcount
            groups = connection.execute(
                "DELETE FROM drt_layer_membership WHERE channel = ? RETURNING grp",
                (channel,),
            ).fetchall()
            if groups:
                evicted[channel] = tuple(sorted(group for (group,) in groups))
        count = wanted.get(channel, 0)
        if count == 1 and deadline > now:
            taken.append(head)
        elif count:
            taken += [
                row_id
                for (row_id,) in connection.execute(
                    "SELECT id FROM drt_layer_message WHERE target = ? AND "
                    "channel = ? AND deadline > ? ORDER BY id LIMIT ?",
                    (target, channel, now, count),
                )
            ]
    messages: list[tuple[int, str, float, bytes]] = []
    for chunk in _chunks(taken, 500):
        marks = ",".join("?" * len(chunk))
        messages += connection.execute(
            "DELETE FROM drt_layer_message "
            f"WHERE id IN ({marks}) RETURNING id, channel, deadline, payload",
            chunk,
        ).fetchall()
    messages.sort()
    return Claim(
        [(channel, deadline, payload) for _, channel, deadline, payload in messages],
        expired,
        evicted,
    )


def sweep(connection: sqlite3.Connection, now: float) -> tuple[int, int, int]:
    """Delete expired messages and memberships of every process.

    Returns:
        How many messages expired, on how many channels, and how many
        memberships ended.
    """
    channels = connection.execute(
        "DELETE FROM drt_layer_message WHERE deadline <= ? RETURNING channel",
        (now,),
    ).fetchall()
    memberships = connection.execute(
        "DELETE FROM drt_layer_membership WHERE expires_at <= ?", (now,)
    ).rowcount
    return len(channels), len(set(channels)), memberships


def forget_process(connection: sqlite3.Connection, process_id: str) -> int:
    """Delete the messages and memberships of a dead process's channels.

    Returns how many messages were dropped.
    """
    dropped = connection.execute(
        "DELETE FROM drt_layer_message WHERE target = ?", (process_id,)
    ).rowcount
    connection.execute(
        "DELETE FROM drt_layer_membership WHERE target = ?", (process_id,)
    )
    return dropped


def discard(connection: sqlite3.Connection, channel: str) -> int:
    """Delete the messages waiting on ``channel``; return how many."""
    return connection.execute(
        "DELETE FROM drt_layer_message WHERE target = ? AND channel = ?",
        (target_of(channel), channel),
    ).rowcount


def flush(connection: sqlite3.Connection) -> None:
    """Delete every message and membership of every process."""
    connection.execute("DELETE FROM drt_layer_message")
    connection.execute("DELETE FROM drt_layer_membership")


def _chunks(items: Sequence[object], size: int) -> Iterable[list[object]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
