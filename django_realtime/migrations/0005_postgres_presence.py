"""The tables of presence on the PostgreSQL store.

Created on PostgreSQL databases only (see
:mod:`django_realtime.layers.postgres.schema`); described in
:mod:`django_realtime.presence.postgres`.
"""

from django.db import migrations

from django_realtime.layers.postgres.schema import PostgresOnlySQL

TABLES = (
    "drt_pg_presence_conn",
    "drt_pg_presence_member",
    "drt_pg_presence_version",
    "drt_pg_presence_process",
    "drt_pg_presence_process_stream",
    "drt_pg_presence_unpublished",
)

CREATE_SQL = (
    """CREATE TABLE drt_pg_presence_conn (
    stream text NOT NULL,
    conn text NOT NULL,
    key text NOT NULL,
    process text NOT NULL,
    PRIMARY KEY (stream, conn)
)""",
    "CREATE INDEX drt_pg_presence_conn_process "
    "ON drt_pg_presence_conn (process, stream)",
    """CREATE TABLE drt_pg_presence_member (
    stream text NOT NULL,
    key text NOT NULL,
    info text NOT NULL,
    connections integer NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (stream, key)
)""",
    """CREATE TABLE drt_pg_presence_version (
    stream text PRIMARY KEY,
    version bigint NOT NULL
)""",
    """CREATE TABLE drt_pg_presence_process (
    process text PRIMARY KEY,
    beat double precision NOT NULL
)""",
    "CREATE INDEX drt_pg_presence_process_beat ON drt_pg_presence_process (beat)",
    """CREATE TABLE drt_pg_presence_process_stream (
    process text NOT NULL,
    stream text NOT NULL,
    PRIMARY KEY (process, stream)
)""",
    """CREATE TABLE drt_pg_presence_unpublished (
    stream text NOT NULL,
    key text NOT NULL,
    info text NOT NULL,
    connections integer NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (stream, key)
)""",
)

DROP_SQL = tuple(f"DROP TABLE IF EXISTS {table}" for table in TABLES)


class PresenceSQL(PostgresOnlySQL):
    """Create the presence tables on PostgreSQL databases only."""

    def describe(self) -> str:
        """Say what the operation does, for ``migrate`` and ``sqlmigrate``."""
        return "Create the PostgreSQL presence tables (PostgreSQL only)"


class Migration(migrations.Migration):
    dependencies = [("django_realtime", "0004_realtime_ops")]

    operations = [PresenceSQL(CREATE_SQL, reverse_sql=DROP_SQL)]
