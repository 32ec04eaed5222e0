"""The SQL of the PostgreSQL presence backend (the rules of :class:`~.model.Roster`).

The tables are described in :mod:`django_realtime.presence.postgres`.
:data:`JOIN` and :data:`LEAVE` each make one change in one statement and
return it; the caller holds the stream's lock (:data:`LOCK`).
"""

__all__ = ["JOIN", "LEAVE", "LOCK", "LOCK_SPACE", "SNAPSHOT"]

# The first key of presence's advisory locks ("drtp" in ASCII), apart from
# the layer's and an application's single-key locks.
LOCK_SPACE = 0x64727470

# Every step locks its streams in one order: two sweeps never deadlock.
LOCK = (
    "SELECT pg_advisory_xact_lock(%s, k) FROM "
    "(SELECT DISTINCT hashtext(s) AS k FROM unnest(%s::text[]) s ORDER BY k) o"
)

# A stream's version and members in one statement (one snapshot of the data).
SNAPSHOT = (
    "SELECT coalesce(v.version, 0), m.key, m.info, m.connections, m.version "
    "FROM (SELECT 1) one "
    "LEFT JOIN drt_pg_presence_version v ON v.stream = %(stream)s "
    "LEFT JOIN drt_pg_presence_member m ON m.stream = %(stream)s"
)


# Each change takes the stream's next version and is kept as its member's
# newest unpublished change. A connection already there: no row, no change.
JOIN = """
WITH c AS (
    INSERT INTO drt_pg_presence_conn (stream, conn, key, process)
    VALUES (%(stream)s, %(conn)s, %(key)s, %(process)s)
    ON CONFLICT (stream, conn) DO NOTHING RETURNING key
), v AS (
    INSERT INTO drt_pg_presence_version AS v (stream, version)
    SELECT %(stream)s, 1 FROM c
    ON CONFLICT (stream) DO UPDATE SET version = v.version + 1 RETURNING version
), m AS (
    INSERT INTO drt_pg_presence_member AS m (stream, key, info, connections, version)
    SELECT %(stream)s, %(key)s, %(info)s, 1, version FROM v
    ON CONFLICT (stream, key) DO UPDATE SET info = excluded.info,
        connections = m.connections + 1, version = excluded.version
    RETURNING key, info, connections, version
), u AS (
    INSERT INTO drt_pg_presence_unpublished AS u
        (stream, key, info, connections, version)
    SELECT %(stream)s, key, info, connections, version FROM m
    ON CONFLICT (stream, key) DO UPDATE SET info = excluded.info,
        connections = excluded.connections, version = excluded.version
), h AS (
    INSERT INTO drt_pg_presence_process_stream (process, stream)
    SELECT %(process)s, %(stream)s FROM c ON CONFLICT DO NOTHING
)
SELECT connections, version FROM m
"""

# With a process, only if it owns the connection. A member whose last
# connection goes is deleted (one of "kept" and "gone" acts).
LEAVE = """
WITH c AS (
    DELETE FROM drt_pg_presence_conn
    WHERE stream = %(stream)s AND conn = %(conn)s
        AND (%(process)s::text IS NULL OR process = %(process)s)
    RETURNING key
), v AS (
    INSERT INTO drt_pg_presence_version AS v (stream, version)
    SELECT %(stream)s, 1 FROM c
    ON CONFLICT (stream) DO UPDATE SET version = v.version + 1 RETURNING version
), new AS (
    SELECT m.key, m.info, m.connections - 1 AS connections, v.version
    FROM drt_pg_presence_member m, c, v
    WHERE m.stream = %(stream)s AND m.key = c.key
), kept AS (
    UPDATE drt_pg_presence_member m
    SET connections = new.connections, version = new.version FROM new
    WHERE m.stream = %(stream)s AND m.key = new.key AND new.connections > 0
), gone AS (
    DELETE FROM drt_pg_presence_member m USING new
    WHERE m.stream = %(stream)s AND m.key = new.key AND new.connections = 0
), u AS (
    INSERT INTO drt_pg_presence_unpublished AS u
        (stream, key, info, connections, version)
    SELECT %(stream)s, key, info, connections, version FROM new
    ON CONFLICT (stream, key) DO UPDATE SET info = excluded.info,
        connections = excluded.connections, version = excluded.version
)
SELECT key, info, connections, version FROM new
"""
