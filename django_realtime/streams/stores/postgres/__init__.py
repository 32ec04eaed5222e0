"""A history store in PostgreSQL tables, announcing through LISTEN/NOTIFY.

``REALTIME = {"STREAM_STORE": {"BACKEND":
"django_realtime.streams.stores.postgres.PostgresHistoryStore", "OPTIONS":
{"alias": "default"}}}``; the options are documented on
:class:`PostgresHistoryStore`. It needs psycopg 3.
"""

from django_realtime.streams.stores.postgres.store import PostgresHistoryStore

__all__ = ["PostgresHistoryStore"]
