"""The SQLite history store's tables and the statements that keep its rules.

Every function here runs inside a transaction the caller opened, and takes
``now`` (seconds on the store's clock).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path

from django_realtime.streams.positions import (
    History,
    HistoryPolicy,
    Position,
    Publication,
    recovery_of,
)

#: Publications read at once when announcing.
BATCH = 1000

__all__ = [
    "BATCH",
    "create_tables",
    "publish",
    "read",
    "same_file",
    "since",
    "stream_row",
    "trim",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS drt_stream (
    name TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drt_stream_entry (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    epoch TEXT NOT NULL,
    offset INTEGER NOT NULL,
    data TEXT NOT NULL,
    size INTEGER NOT NULL,
    published_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS drt_stream_entry_offset
    ON drt_stream_entry (stream, offset);
CREATE INDEX IF NOT EXISTS drt_stream_entry_age
    ON drt_stream_entry (published_at);
"""


def create_tables(connection: sqlite3.Connection) -> None:
    """Create the tables and indexes if they are missing.

    One statement at a time, so that it may run inside a transaction.
    """
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)


def same_file(name: str, path: Path) -> bool:
    """Return whether the file ``name`` is ``path``."""
    try:
        return os.path.samefile(name, path)
    except (OSError, ValueError):
        return False


def since(
    connection: sqlite3.Connection, now: float, *, cursor: int
) -> list[tuple[int, str, str, int, str]]:
    """Return up to a batch of publications after ``cursor``, in seq order."""
    rows: list[tuple[int, str, str, int, str]] = connection.execute(
        "SELECT seq, stream, epoch, offset, data FROM drt_stream_entry "
        "WHERE seq > ? ORDER BY seq LIMIT ?",
        (cursor, BATCH),
    ).fetchall()
    return rows


def stream_row(
    connection: sqlite3.Connection, stream: str
) -> tuple[str, int, int, int]:
    row = connection.execute(
        "SELECT epoch, offset, count, bytes FROM drt_stream WHERE name = ?",
        (stream,),
    ).fetchone()
    if row is not None:
        return row[0], row[1], row[2], row[3]
    epoch = secrets.token_hex(4)
    connection.execute(
        "INSERT INTO drt_stream (name, epoch, offset, count, bytes) "
        "VALUES (?, ?, 0, 0, 0)",
        (stream, epoch),
    )
    return epoch, 0, 0, 0


def trim(
    connection: sqlite3.Connection,
    stream: str,
    policy: HistoryPolicy,
    now: float,
    count: int,
    size: int,
) -> tuple[int, int]:
    """Drop the oldest publications ``policy`` no longer keeps."""
    while count:
        seq, oldest_size, published_at = connection.execute(
            "SELECT seq, size, published_at FROM drt_stream_entry "
            "WHERE stream = ? ORDER BY offset LIMIT 1",
            (stream,),
        ).fetchone()
        if not (
            (policy.max_count is not None and count > policy.max_count)
            or (policy.max_bytes is not None and size > policy.max_bytes)
            or (policy.max_age is not None and now - published_at > policy.max_age)
        ):
            break
        connection.execute("DELETE FROM drt_stream_entry WHERE seq = ?", (seq,))
        count -= 1
        size -= oldest_size
    return count, size


def publish(
    connection: sqlite3.Connection,
    stream: str,
    data: str,
    size: int,
    policy: HistoryPolicy,
    now: float,
) -> Publication:
    epoch, offset, count, total = stream_row(connection, stream)
    offset += 1
    connection.execute(
        "INSERT INTO drt_stream_entry "
        "(stream, epoch, offset, data, size, published_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (stream, epoch, offset, data, size, now),
    )
    count, total = trim(connection, stream, policy, now, count + 1, total + size)
    connection.execute(
        "UPDATE drt_stream SET offset = ?, count = ?, bytes = ? WHERE name = ?",
        (offset, count, total, stream),
    )
    return Publication(stream, epoch, offset, data)


def read(
    connection: sqlite3.Connection,
    stream: str,
    since: Position | None,
    policy: HistoryPolicy,
    now: float,
) -> History:
    epoch, offset, count, total = stream_row(connection, stream)
    kept, kept_bytes = trim(connection, stream, policy, now, count, total)
    if (kept, kept_bytes) != (count, total):
        connection.execute(
            "UPDATE drt_stream SET count = ?, bytes = ? WHERE name = ?",
            (kept, kept_bytes, stream),
        )
    if since is None:
        return History(stream, epoch, offset)
    oldest = offset + 1 - kept
    reason = recovery_of(since, epoch, offset, oldest)
    if reason is not None:
        return History(stream, epoch, offset, reason=reason)
    rows: list[tuple[int, str]] = connection.execute(
        "SELECT offset, data FROM drt_stream_entry "
        "WHERE stream = ? AND offset > ? ORDER BY offset",
        (stream, since.offset),
    ).fetchall()
    publications = tuple(Publication(stream, epoch, n, data) for n, data in rows)
    return History(stream, epoch, offset, publications)
