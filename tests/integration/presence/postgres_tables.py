"""Empty the PostgreSQL presence tables between tests (streams names repeat)."""

from __future__ import annotations

import psycopg

from django_realtime.layers.postgres._params import connection_kwargs

__all__ = ["PRESENCE_TABLES", "empty_presence_tables"]

PRESENCE_TABLES = (
    "drt_pg_presence_conn",
    "drt_pg_presence_member",
    "drt_pg_presence_version",
    "drt_pg_presence_process",
    "drt_pg_presence_process_stream",
    "drt_pg_presence_unpublished",
)


async def empty_presence_tables(alias: str = "postgres") -> None:
    """Delete every row of the presence tables of the test database."""
    async with await psycopg.AsyncConnection.connect(
        autocommit=True, **connection_kwargs(alias)
    ) as connection:
        await connection.execute(f"TRUNCATE {', '.join(PRESENCE_TABLES)}")
