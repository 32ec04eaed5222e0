"""The PostgreSQL history store's statements, for psycopg and for Django.

The same statements run on the store's own async connection and, for
:meth:`~.store.PostgresHistoryStore.publish_in_transaction`, on a Django
cursor inside the caller's transaction. Each function takes ``now``
(seconds on the store's clock).

A stream's row is locked by the statement that gives a publication its
offset, so publications of one stream commit in offset order; each
publication notifies :data:`NOTIFY_CHANNEL` with ``"<offset> <epoch>
<stream>"``, delivered by PostgreSQL when the transaction commits.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django_realtime.streams.positions import (
    History,
    HistoryPolicy,
    Position,
    Publication,
    recovery_of,
)

__all__ = [
    "BATCH",
    "CREATE",
    "ENTRIES",
    "NOTIFY_CHANNEL",
    "PUBLISH",
    "STREAM",
    "TRIM",
    "after",
    "history",
    "must_trim",
    "new_epoch",
    "parse_notification",
    "publish_params",
    "trim_params",
]

#: Publications read at once when announcing.
BATCH = 1000

#: The notification channel of publications.
NOTIFY_CHANNEL = "drt_stream"

#: Give the next offset (creating the stream), keep the payload, notify.
#: Returns the epoch, the offset, the count and bytes kept, and the time
#: of the oldest publication kept before this one.
PUBLISH = """
WITH s AS (
    INSERT INTO drt_pg_stream AS s (name, epoch, "offset", count, bytes)
    VALUES (%(stream)s, %(epoch)s, 1, 1, %(size)s)
    ON CONFLICT (name) DO UPDATE SET "offset" = s."offset" + 1,
        count = s.count + 1, bytes = s.bytes + excluded.bytes
    RETURNING epoch, "offset", count, bytes
), e AS (
    INSERT INTO drt_pg_stream_entry (stream, "offset", epoch, data, size,
        published_at)
    SELECT %(stream)s, "offset", epoch, %(data)s, %(size)s, %(now)s FROM s
)
SELECT s.epoch, s."offset", s.count, s.bytes,
    (SELECT published_at FROM drt_pg_stream_entry
     WHERE stream = %(stream)s ORDER BY "offset" LIMIT 1),
    pg_notify('drt_stream', s."offset" || ' ' || s.epoch || ' ' || %(stream)s)
FROM s
"""

#: Drop the publications the policy no longer keeps; update the counts.
TRIM = """
WITH k AS (
    SELECT "offset", published_at,
        row_number() OVER w AS n, sum(size) OVER w AS total
    FROM drt_pg_stream_entry WHERE stream = %(stream)s
    WINDOW w AS (ORDER BY "offset" DESC)
), d AS (
    DELETE FROM drt_pg_stream_entry e USING k
    WHERE e.stream = %(stream)s AND e."offset" = k."offset"
        AND (k.n > %(max_count)s OR k.total > %(max_bytes)s
             OR k.published_at < %(cutoff)s)
    RETURNING e.size
)
UPDATE drt_pg_stream SET count = count - (SELECT count(*) FROM d),
    bytes = bytes - (SELECT COALESCE(sum(size), 0) FROM d)
WHERE name = %(stream)s
"""

#: Create the stream if it is new (a new epoch at offset 0).
CREATE = """
INSERT INTO drt_pg_stream (name, epoch, "offset", count, bytes)
VALUES (%s, %s, 0, 0, 0) ON CONFLICT (name) DO NOTHING
"""

#: The stream's epoch, newest offset, count and bytes kept, oldest time.
STREAM = """
SELECT epoch, "offset", count, bytes,
    (SELECT published_at FROM drt_pg_stream_entry
     WHERE stream = %(stream)s ORDER BY "offset" LIMIT 1)
FROM drt_pg_stream WHERE name = %(stream)s
"""

#: The publications of one epoch of a stream after an offset.
ENTRIES = """
SELECT "offset", data FROM drt_pg_stream_entry
WHERE stream = %s AND epoch = %s AND "offset" > %s AND "offset" <= %s
ORDER BY "offset" LIMIT %s
"""


def new_epoch() -> str:
    """Return a new epoch for a stream that starts."""
    return secrets.token_hex(4)


def publish_params(stream: str, data: str, size: int, now: float) -> dict[str, Any]:
    """Return the parameters of :data:`PUBLISH`."""
    return {
        "stream": stream,
        "epoch": new_epoch(),
        "size": size,
        "data": data,
        "now": now,
    }


def must_trim(
    policy: HistoryPolicy, count: int, size: int, oldest: float | None, now: float
) -> bool:
    """Return whether a stream keeping this much is over ``policy``."""
    return (
        (policy.max_count is not None and count > policy.max_count)
        or (policy.max_bytes is not None and size > policy.max_bytes)
        or (
            policy.max_age is not None
            and oldest is not None
            and now - oldest > policy.max_age
        )
    )


def trim_params(stream: str, policy: HistoryPolicy, now: float) -> dict[str, Any]:
    """Return the parameters of :data:`TRIM`."""
    return {
        "stream": stream,
        "max_count": policy.max_count,
        "max_bytes": policy.max_bytes,
        "cutoff": None if policy.max_age is None else now - policy.max_age,
    }


def history(
    stream: str,
    since: Position | None,
    row: Sequence[Any],
    kept: int,
) -> tuple[History | None, int]:
    """Return the answer to a read that needs no entries, or where to read.

    Args:
        row: The stream's :data:`STREAM` row.
        kept: How many publications it keeps after trimming.

    Returns:
        The :class:`History` if it is complete without entries (no
        ``since``, or history that cannot be replayed), else ``None``; and
        the stream's newest offset.
    """
    epoch, offset = str(row[0]), int(row[1])
    if since is None:
        return History(stream, epoch, offset), offset
    reason = recovery_of(since, epoch, offset, offset + 1 - kept)
    if reason is not None:
        return History(stream, epoch, offset, reason=reason), offset
    return None, offset


def after(
    stream: str, epoch: str, rows: Sequence[Sequence[Any]]
) -> tuple[Publication, ...]:
    """Return the :data:`ENTRIES` rows as publications."""
    return tuple(Publication(stream, epoch, int(n), str(data)) for n, data in rows)


def parse_notification(payload: str) -> tuple[int, str, str] | None:
    """Return ``(offset, epoch, stream)`` from a notification, or ``None``."""
    parts = payload.split(" ", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2]
