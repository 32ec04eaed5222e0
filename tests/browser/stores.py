"""The history store of the browser tests' server, and of their publisher.

Streams named ``small.*`` keep 3 messages, others 1000. With
``BROWSER_TEST_REDIS_PREFIX`` in the environment, the history is in Redis
under that prefix, shared by the server and :mod:`tests.browser.publisher`
and kept across server restarts; otherwise it is in the server's memory.
"""

from __future__ import annotations

import os

from django_realtime.streams.stores import PolicyTable
from django_realtime.streams.stores.base import HistoryStore

__all__ = ["POLICIES", "PREFIX_ENV", "REDIS_URL", "make_store"]

POLICIES = {"small.*": {"max_count": 3}, "*": {"max_count": 1000}}
PREFIX_ENV = "BROWSER_TEST_REDIS_PREFIX"
REDIS_URL = "redis://127.0.0.1:6379"


def make_store() -> HistoryStore:
    """Return the store the environment asks for, with :data:`POLICIES`."""
    prefix = os.environ.get(PREFIX_ENV)
    policies = PolicyTable(POLICIES)
    if prefix:
        from django_realtime.streams.stores.redis import RedisHistoryStore

        return RedisHistoryStore(REDIS_URL, prefix=prefix, policies=policies)
    from django_realtime.streams.stores import MemoryHistoryStore

    return MemoryHistoryStore(policies)
