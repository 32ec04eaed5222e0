"""Empty the PostgreSQL presence tables between tests (streams names repeat)."""

from __future__ import annotations

import psycopg

from django_realtime.layers.postgres._params import connection_kwargs
from django_realtime.layers.postgres.schema import PRESENCE_TABLES

__all__ = ["empty_presence_tables"]


async def empty_presence_tables(alias: str = "postgres") -> None:
    """Delete every row of the presence tables of the test database."""
    async with await psycopg.AsyncConnection.connect(
        autocommit=True, **connection_kwargs(alias)
    ) as connection:
        await connection.execute(f"TRUNCATE {', '.join(PRESENCE_TABLES)}")
