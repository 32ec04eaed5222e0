"""History stores: where streams keep their recent publications.

:class:`MemoryHistoryStore` is the embedded default;
:class:`~django_realtime.streams.stores.redis.RedisHistoryStore` shares
streams between processes.
"""

from django_realtime.streams.stores.base import (
    HistoryStore,
    Listener,
    PolicyTable,
    StreamHub,
)
from django_realtime.streams.stores.memory import MemoryHistoryStore

__all__ = [
    "HistoryStore",
    "Listener",
    "MemoryHistoryStore",
    "PolicyTable",
    "StreamHub",
]
