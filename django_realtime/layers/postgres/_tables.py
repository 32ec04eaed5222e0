"""The statements that keep the PostgreSQL layer's rules in its tables.

Every function runs inside a transaction the engine opened, and takes
``now`` (seconds since the epoch). The rules are the in-memory layer's
(:mod:`django_realtime.layers._core`), kept in the database so that every
process sees one state:

- A message is live while ``now < deadline``; an expired message is never
  returned, and does not count towards its channel's capacity.
- A channel holds at most its capacity of live messages. A direct send
  holds a transaction-scoped advisory lock on its channel while it counts
  and inserts, so concurrent senders in any process never overfill it.
- A membership is live while ``now < expires_at``; ``group_add`` renews it.
- A process-local channel is read only by the process that made it: its
  rows carry that process's id as ``target``; normal channels have the
  empty target and are read by one receiver in any process
  (``FOR UPDATE SKIP LOCKED``).
- Each write notifies the channel of the process it wrote for
  (:func:`wake_channel`); the notification carries nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django_realtime.exceptions import ChannelFull
from django_realtime.layers._core import GroupSendResult
from django_realtime.layers.postgres.engine import Connection

__all__ = [
    "ANY_PROCESS_CHANNEL",
    "PREFETCH",
    "PROCESS_ID_LENGTH",
    "Claim",
    "claim",
    "discard",
    "flush",
    "forget",
    "group_add",
    "group_discard",
    "group_send",
    "insert",
    "sweep",
    "target_of",
    "wake_channel",
]

#: Hexadecimal characters of a process id, just before a channel's ``!``.
PROCESS_ID_LENGTH = 12

#: Messages a look takes at most from a process-local channel whose
#: receiver waits (more if more receivers wait on it).
PREFETCH = 64

#: The notification channel of normal channels' messages.
ANY_PROCESS_CHANNEL = "drt_layer_any"

# The first key of the layer's advisory locks ("drt" in ASCII), so that
# they do not meet an application's single-key locks.
_LOCK_SPACE = 0x647274

_PROCESS_ID = re.compile(rf"[0-9a-f]{{{PROCESS_ID_LENGTH}}}")

_WAKE_SQL = "CASE WHEN {t} = '' THEN 'drt_layer_any' ELSE 'drt_layer_' || {t} END"


def target_of(channel: str) -> str:
    """Return the id of the process that reads ``channel``, or ``""``."""
    bang = channel.find("!")
    if bang < PROCESS_ID_LENGTH:
        return ""
    process = channel[bang - PROCESS_ID_LENGTH : bang]
    return process if _PROCESS_ID.fullmatch(process) else ""


def wake_channel(target: str) -> str:
    """Return the notification channel of the process ``target`` (or any)."""
    return f"drt_layer_{target}" if target else ANY_PROCESS_CHANNEL


async def insert(
    connection: Connection,
    channel: str,
    payload: bytes,
    *,
    now: float,
    expiry: float,
    capacity: int,
) -> None:
    """Queue ``payload`` on ``channel`` and notify its reader.

    Raises:
        ChannelFull: ``channel`` holds ``capacity`` live messages.
    """
    target = target_of(channel)
    await connection.execute(
        "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, channel)
    )
    cursor = await connection.execute(
        "WITH size AS (SELECT count(*) AS n FROM drt_pg_message "
        "WHERE target = %(target)s AND channel = %(channel)s "
        "AND deadline > %(now)s), "
        "added AS (INSERT INTO drt_pg_message (target, channel, deadline, payload) "
        "SELECT %(target)s, %(channel)s, %(deadline)s, %(payload)s FROM size "
        "WHERE size.n < %(capacity)s RETURNING id) "
        "SELECT size.n, (SELECT count(*) FROM added), "
        "CASE WHEN size.n < %(capacity)s THEN pg_notify(%(wake)s, '') END "
        "FROM size",
        {
            "target": target,
            "channel": channel,
            "now": now,
            "deadline": now + expiry,
            "payload": payload,
            "capacity": capacity,
            "wake": wake_channel(target),
        },
    )
    row = await cursor.fetchone()
    if row is None or not row[1]:
        size = row[0] if row else capacity
        raise ChannelFull(
            f"Channel {channel!r} is full: it holds {size} messages, its "
            f"capacity is {capacity}."
        )


async def group_send(
    connection: Connection,
    group: str,
    payload: bytes,
    *,
    now: float,
    expiry: float,
    capacity_of: Callable[[str], int],
) -> GroupSendResult:
    """Queue ``payload`` on every live member of ``group`` that has room."""
    cursor = await connection.execute(
        "SELECT m.channel, m.target, (SELECT count(*) FROM drt_pg_message q "
        "WHERE q.target = m.target AND q.channel = m.channel AND q.deadline > %s) "
        "FROM drt_pg_membership m WHERE m.grp = %s AND m.expires_at > %s",
        (now, group, now),
    )
    delivered: list[str] = []
    full: list[str] = []
    targets: list[str] = []
    for channel, target, size in await cursor.fetchall():
        if size >= capacity_of(channel):
            full.append(channel)
            continue
        delivered.append(channel)
        targets.append(target)
    if delivered:
        await connection.execute(
            "WITH added AS (INSERT INTO drt_pg_message "
            "(target, channel, deadline, payload) "
            "SELECT t, c, %s, %s FROM unnest(%s::text[], %s::text[]) AS u(t, c) "
            "RETURNING target) "
            f"SELECT pg_notify({_WAKE_SQL.format(t='t.target')}, '') "
            "FROM (SELECT DISTINCT target FROM added) AS t",
            (now + expiry, payload, targets, delivered),
        )
    return GroupSendResult(delivered, full)


async def group_add(
    connection: Connection, group: str, channel: str, expires_at: float
) -> None:
    """Add ``channel`` to ``group`` until ``expires_at``, or renew it."""
    await connection.execute(
        "INSERT INTO drt_pg_membership (grp, channel, target, expires_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (grp, channel) "
        "DO UPDATE SET expires_at = excluded.expires_at",
        (group, channel, target_of(channel), expires_at),
    )


async def group_discard(connection: Connection, group: str, channel: str) -> None:
    """Remove ``channel`` from ``group``, if it is a member."""
    await connection.execute(
        "DELETE FROM drt_pg_membership WHERE grp = %s AND channel = %s",
        (group, channel),
    )


@dataclass(slots=True)
class Claim:
    """What one process took from the tables for its waiting receivers.

    Attributes:
        messages: ``(channel, deadline, payload)``, oldest first.
        expired: Channel -> how many of its messages were found expired.
        evicted: Channel -> the groups it was taken out of, because it was
            found holding expired messages (its reader is too slow or gone).
    """

    messages: list[tuple[str, float, bytes]]
    expired: dict[str, int]
    evicted: dict[str, tuple[str, ...]]


async def claim(
    connection: Connection,
    process_id: str,
    normal: Sequence[str],
    lacking: Callable[[set[str]], dict[str, int]],
    now: float,
) -> Claim:
    """Take, and delete, the oldest messages that waiting receivers lack.

    Looks at this process's channels and at the normal channels in
    ``normal``; ``lacking`` says, for the channels found holding messages,
    how many each one's receivers lack. From a channel of this process it
    takes up to :data:`PREFETCH` messages even if its receivers lack fewer:
    they stay in the process until received, and expire there as in the
    table. A channel found holding expired
    messages has them deleted and reported, and leaves its groups.
    """
    cursor = await connection.execute(
        "SELECT target, channel, count(*) FILTER (WHERE deadline > %(now)s), "
        "bool_or(deadline <= %(now)s) FROM drt_pg_message "
        "WHERE target = %(me)s OR (target = '' AND channel = ANY(%(normal)s)) "
        "GROUP BY target, channel",
        {"now": now, "me": process_id, "normal": list(normal)},
    )
    heads = await cursor.fetchall()
    if not heads:
        return Claim([], {}, {})
    expired: dict[str, int] = {}
    evicted: dict[str, tuple[str, ...]] = {}
    stale = [(target, channel) for target, channel, _, old in heads if old]
    if stale:
        cursor = await connection.execute(
            "DELETE FROM drt_pg_message WHERE (target, channel) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[])) AND deadline <= %s "
            "RETURNING channel",
            ([t for t, _ in stale], [c for _, c in stale], now),
        )
        for (channel,) in await cursor.fetchall():
            expired[channel] = expired.get(channel, 0) + 1
        cursor = await connection.execute(
            "DELETE FROM drt_pg_membership WHERE channel = ANY(%s) "
            "RETURNING channel, grp",
            ([c for _, c in stale],),
        )
        groups: dict[str, list[str]] = {}
        for channel, group in await cursor.fetchall():
            groups.setdefault(channel, []).append(group)
        evicted = {channel: tuple(sorted(names)) for channel, names in groups.items()}
    wanted = lacking({channel for _, channel, live, _ in heads if live})
    rows: list[tuple[int, str, float, bytes]] = []
    # Only this process reads its own channels: a receiver that is waiting
    # takes a batch at once rather than one message per look.
    local = [
        (channel, min(live, max(wanted[channel], PREFETCH)))
        for target, channel, live, _ in heads
        if target and channel in wanted
    ]
    if local:
        cursor = await connection.execute(
            "DELETE FROM drt_pg_message WHERE id IN (SELECT x.id FROM "
            "(SELECT id, channel, row_number() OVER (PARTITION BY channel "
            "ORDER BY id) AS n FROM drt_pg_message WHERE target = %s "
            "AND channel = ANY(%s) AND deadline > %s) AS x "
            "JOIN unnest(%s::text[], %s::int[]) AS w(channel, n) "
            "ON w.channel = x.channel WHERE x.n <= w.n) "
            "RETURNING id, channel, deadline, payload",
            (
                process_id,
                [c for c, _ in local],
                now,
                [c for c, _ in local],
                [n for _, n in local],
            ),
        )
        rows += await cursor.fetchall()
    for target, channel, _, _ in heads:
        if target or channel not in wanted:
            continue
        cursor = await connection.execute(
            "DELETE FROM drt_pg_message WHERE id IN (SELECT id FROM "
            "drt_pg_message WHERE target = '' AND channel = %s AND deadline > %s "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING id, channel, deadline, payload",
            (channel, now, wanted[channel]),
        )
        rows += await cursor.fetchall()
    rows.sort()
    return Claim(
        [(channel, deadline, payload) for _, channel, deadline, payload in rows],
        expired,
        evicted,
    )


async def sweep(
    connection: Connection, now: float, *, process_id: str, dead_after: float | None
) -> tuple[int, int, int, int]:
    """Delete expired state; mark this process alive; forget dead processes.

    The liveness of processes is measured on the database's clock. With
    ``dead_after`` set, a process not seen for that many seconds is dead:
    its messages and memberships are deleted.

    Returns:
        How many messages expired, on how many channels, how many
        memberships ended, and how many messages of dead processes were
        dropped.
    """
    cursor = await connection.execute(
        "DELETE FROM drt_pg_message WHERE deadline <= %s RETURNING channel", (now,)
    )
    channels = [channel for (channel,) in await cursor.fetchall()]
    cursor = await connection.execute(
        "DELETE FROM drt_pg_membership WHERE expires_at <= %s", (now,)
    )
    memberships = cursor.rowcount
    await connection.execute(
        "INSERT INTO drt_pg_process (id, seen_at) "
        "VALUES (%s, extract(epoch from now())) "
        "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        (process_id,),
    )
    dropped = 0
    if dead_after is not None:
        cursor = await connection.execute(
            "DELETE FROM drt_pg_process "
            "WHERE seen_at < extract(epoch from now()) - %s RETURNING id",
            (dead_after,),
        )
        dead = [process for (process,) in await cursor.fetchall()]
        if dead:
            dropped = await forget(connection, dead)
    return len(channels), len(set(channels)), memberships, dropped


async def forget(connection: Connection, processes: list[str]) -> int:
    """Delete the rows of ``processes``; return how many messages were dropped."""
    await connection.execute(
        "DELETE FROM drt_pg_process WHERE id = ANY(%s)", (processes,)
    )
    await connection.execute(
        "DELETE FROM drt_pg_membership WHERE target = ANY(%s)", (processes,)
    )
    cursor = await connection.execute(
        "DELETE FROM drt_pg_message WHERE target = ANY(%s)", (processes,)
    )
    return cursor.rowcount


async def discard(connection: Connection, channel: str) -> int:
    """Delete the messages waiting on ``channel``; return how many."""
    cursor = await connection.execute(
        "DELETE FROM drt_pg_message WHERE target = %s AND channel = %s",
        (target_of(channel), channel),
    )
    return cursor.rowcount


async def flush(connection: Connection) -> None:
    """Delete every message and membership of every process."""
    await connection.execute("DELETE FROM drt_pg_message")
    await connection.execute("DELETE FROM drt_pg_membership")
