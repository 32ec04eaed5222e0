"""One engine per process for a layer or store that does its I/O in a thread.

The SQLite and PostgreSQL layers and history stores each run their
statements on an engine (a thread of their own), made on first use. A
process forked after that use inherits the object but not the engine's
thread: the child abandons the parent's engine (each engine knows what it
must leave alone: a copied connection closed in the child could end the
parent's session), lets its owner start afresh (a new process id, empty
in-process state), and makes its own on its next use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Engine", "EngineSlot"]


class Engine(Protocol):
    """What a slot needs of an engine."""

    def stop(self) -> None:
        """Ask the engine's thread to finish its work and end."""

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread; return whether it ended."""

    def abandon(self) -> None:
        """Let go of the engine in a child forked from its process."""


E = TypeVar("E", bound=Engine)


class EngineSlot(Generic[E]):
    """Hold the engine of one layer or store in the current process.

    Args:
        make: Return a new engine (called at most once per process and
            :meth:`close`, under a lock).
        on_fork: Called in a forked child before it makes its engine.
    """

    __slots__ = ("_engine", "_lock", "_make", "_on_fork", "_pid")

    def __init__(self, make: Callable[[], E], on_fork: Callable[[], None]) -> None:
        self._make = make
        self._on_fork = on_fork
        self._lock = threading.Lock()
        self._engine: E | None = None
        self._pid = os.getpid()

    @property
    def current(self) -> E | None:
        """The engine if this process has made one, without making it."""
        return self._engine if self._pid == os.getpid() else None

    def get(self) -> E:
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

    async def close(self, join_within: float) -> E | None:
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
            self._engine.abandon()
            self._engine = None
        self._pid = os.getpid()
        self._on_fork()
