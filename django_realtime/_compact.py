"""Shrink hash tables that once held a crowd to the size of what they hold now.

A dict or set never shrinks when entries leave it: one that held 10,000
connections keeps a table for 10,000 (about 0.5 MiB) until enough new
entries come to trigger a resize. After a wave of connections has gone,
:mod:`django_realtime.release` rebuilds such tables in place, so that the
memory returns to the system with the rest of the heap.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

__all__ = ["compact", "compact_weak"]

# Below this, a table's slack is not worth a rebuild.
_SLACK = 64 * 1024


def compact(*tables: dict[Any, Any] | set[Any]) -> int:
    """Rebuild each of ``tables`` in place if it is much larger than needed.

    Identity, contents and (for dicts) order are kept. Returns the bytes
    the tables shrank by.
    """
    saved = 0
    for table in tables:
        before = sys.getsizeof(table)
        # A copy is sized for the contents: it measures the slack, then
        # refills the emptied table.
        fresh = table.copy()
        if before - sys.getsizeof(fresh) < _SLACK:
            continue
        table.clear()
        table.update(fresh)
        saved += before - sys.getsizeof(table)
    return saved


def compact_weak(*containers: object) -> int:
    """Like :func:`compact`, for weak containers (``WeakSet``, weak dicts).

    Their tables of references are rebuilt with the collector paused, so
    that no reference dies (and runs its removal callback) half-way.
    Containers without the usual ``data`` table are skipped.
    """
    tables = [getattr(container, "data", None) for container in containers]
    enabled = gc.isenabled()
    gc.disable()
    try:
        return compact(*(t for t in tables if isinstance(t, dict | set)))
    finally:
        if enabled:
            gc.enable()
