"""The SQLite history store: streams in a file, shared by one machine's processes.

``REALTIME = {"STREAM_STORE": {"BACKEND":
"django_realtime.streams.stores.sqlite.SQLiteHistoryStore", "OPTIONS":
{"path": ...}}}``; the options are documented on :class:`SQLiteHistoryStore`.
"""

from django_realtime.streams.stores.sqlite.store import SQLiteHistoryStore

__all__ = ["SQLiteHistoryStore"]
