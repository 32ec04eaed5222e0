"""The PostgreSQL tables of the channel layer and the history store.

They are created by the app's migration ``0002_postgres`` through
:class:`PostgresOnlySQL`, which acts on PostgreSQL databases only: a
project whose databases are SQLite gets no PostgreSQL objects. The layer
and the store reach the tables with SQL of their own, never through the
ORM, so the tables have no models.

Channel layer:

- ``drt_pg_message``: queued messages; ``target`` is the id of the process
  that reads a process-local channel, or ``''`` for a normal channel;
  ``deadline`` is in seconds since the epoch.
- ``drt_pg_membership``: group memberships, live while ``now < expires_at``.
- ``drt_pg_process``: the processes that receive, with the time each was
  last seen, so that the memberships of a process that died are removed.

History store:

- ``drt_pg_stream``: one row per stream: its epoch, newest offset, and the
  count and bytes of the publications kept.
- ``drt_pg_stream_entry``: the kept publications, keyed by stream and offset.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

__all__ = [
    "CREATE_SQL",
    "DROP_SQL",
    "LAYER_TABLES",
    "PRESENCE_TABLES",
    "STORE_TABLES",
    "PostgresOnlySQL",
]

#: The layer's tables, as checked by ``django_realtime.postgres.E003``.
LAYER_TABLES = ("drt_pg_message", "drt_pg_membership", "drt_pg_process")

#: The history store's tables.
STORE_TABLES = ("drt_pg_stream", "drt_pg_stream_entry")

#: The tables of presence on the store (migration 0005); with
#: :data:`STORE_TABLES`, what ``django_realtime.postgres.E003`` checks for a
#: store.
PRESENCE_TABLES = (
    "drt_pg_presence_conn",
    "drt_pg_presence_member",
    "drt_pg_presence_version",
    "drt_pg_presence_process",
    "drt_pg_presence_process_stream",
    "drt_pg_presence_unpublished",
)

CREATE_SQL: tuple[str, ...] = (
    """CREATE TABLE drt_pg_message (
    id bigserial PRIMARY KEY,
    target text NOT NULL,
    channel text NOT NULL,
    deadline double precision NOT NULL,
    payload bytea NOT NULL
)""",
    "CREATE INDEX drt_pg_message_queue ON drt_pg_message (target, channel, id)",
    "CREATE INDEX drt_pg_message_deadline ON drt_pg_message (deadline)",
    """CREATE TABLE drt_pg_membership (
    grp text NOT NULL,
    channel text NOT NULL,
    target text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (grp, channel)
)""",
    "CREATE INDEX drt_pg_membership_channel ON drt_pg_membership (channel)",
    "CREATE INDEX drt_pg_membership_target ON drt_pg_membership (target)",
    """CREATE TABLE drt_pg_process (
    id text PRIMARY KEY,
    seen_at double precision NOT NULL
)""",
    """CREATE TABLE drt_pg_stream (
    name text PRIMARY KEY,
    epoch text NOT NULL,
    "offset" bigint NOT NULL,
    count bigint NOT NULL,
    bytes bigint NOT NULL
)""",
    """CREATE TABLE drt_pg_stream_entry (
    stream text NOT NULL,
    "offset" bigint NOT NULL,
    epoch text NOT NULL,
    data text NOT NULL,
    size integer NOT NULL,
    published_at double precision NOT NULL,
    PRIMARY KEY (stream, "offset")
)""",
    "CREATE INDEX drt_pg_stream_entry_age ON drt_pg_stream_entry (published_at)",
)

DROP_SQL: tuple[str, ...] = tuple(
    f"DROP TABLE IF EXISTS {table}" for table in (*LAYER_TABLES, *STORE_TABLES)
)


class PostgresOnlySQL(migrations.RunSQL):
    """Run SQL on PostgreSQL databases; do nothing on any other.

    ``sqlmigrate`` on a PostgreSQL database shows the SQL; on another it
    shows none.
    """

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        """Create the tables if the database is PostgreSQL."""
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        """Drop the tables if the database is PostgreSQL."""
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        """Say what the operation does, for ``migrate`` and ``sqlmigrate``."""
        return "Create the PostgreSQL channel layer and stream tables (PostgreSQL only)"
