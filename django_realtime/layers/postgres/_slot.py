"""One engine per process for a PostgreSQL layer or store.

The engine, its thread and its connections are made on first use. A
process forked after that inherits the object but not the thread; the
child leaves the parent's engine and connections alone (closing a copied
connection would end the parent's session), lets its owner start afresh,
and makes its own engine on its next use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from django_realtime.layers.postgres.engine import Engine

# Engines copied into a forked child: never used, never closed.
_ABANDONED: list[Engine] = []


class EngineSlot:
    """Hold the engine of one layer or store in the current process.

    Args:
        make: Return a new engine (called at most once per process and
            :meth:`close`, under a lock).
        on_fork: Called in a forked child before it makes its engine.
    """

    __slots__ = ("_engine", "_lock", "_make", "_on_fork", "_pid")

    def __init__(self, make: Callable[[], Engine], on_fork: Callable[[], None]) -> None:
        self._make = make
        self._on_fork = on_fork
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = os.getpid()

    @property
    def current(self) -> Engine | None:
        """The engine if this process has made one, without making it."""
        return self._engine if self._pid == os.getpid() else None

    def get(self) -> Engine:
        """Return this process's engine, made on first use."""
        engine = self._engine
        if engine is not None and self._pid == os.getpid():
            return engine
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            if self._engine is None:
                self._engine = self._make()
            return self._engine

    async def close(self, join_within: float) -> Engine | None:
        """Stop the engine, if any; wait up to ``join_within`` s for its thread.

        Return the engine that was stopped. The slot may be used again.
        """
        with self._lock:
            engine, self._engine = self.current, None
        if engine is None:
            return None
        engine.stop()
        await asyncio.to_thread(engine.join, join_within)
        return engine

    def _forked(self) -> None:
        # A lock held by another thread at the fork stays held in the child.
        self._lock = threading.Lock()
        if self._engine is not None:
            _ABANDONED.append(self._engine)
            self._engine = None
        self._pid = os.getpid()
        self._on_fork()
