"""The embedded history store: streams kept in this process's memory.

History lives as long as the process: after a restart every stream starts
a new epoch, and clients that come back are told their history is gone.
Servers in several processes need :class:`~django_realtime.streams.stores.
redis.RedisHistoryStore`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from django_realtime.streams.positions import (
    History,
    HistoryWindow,
    Position,
    Publication,
)
from django_realtime.streams.stores.base import HistoryStore, Listener, PolicyTable

__all__ = ["MemoryHistoryStore"]

logger = logging.getLogger(__name__)


def new_epoch() -> str:
    """Return a fresh epoch name, never given before."""
    return secrets.token_hex(4)


class MemoryHistoryStore(HistoryStore):
    """Keep streams in memory and announce to listeners in this process.

    Publishing is safe from any thread: a lock makes assigning, keeping and
    announcing one step, so every listener sees a stream's publications in
    offset order.

    A stream that keeps no publication (they aged out, or it never had
    one) and that nobody listens to is forgotten (checked once a minute):
    its next use starts a new epoch, so memory is not held by streams
    nobody uses.
    """

    #: Seconds between two sweeps of forgotten streams.
    sweep_interval = 60.0

    def __init__(
        self,
        policies: PolicyTable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(policies, clock)
        self._windows: dict[str, HistoryWindow] = {}
        self._lock = threading.Lock()
        self._swept = self.clock()
        # Whether this process has shown it serves subscribers (a listener
        # came), and whether the lonely-publisher warning was given.
        self._listened = False
        self._warned = False

    def _window(self, stream: str) -> HistoryWindow:
        window = self._windows.get(stream)
        if window is None:
            window = self._windows[stream] = HistoryWindow(stream, new_epoch())
        return window

    async def publish(self, stream: str, data: str) -> Publication:
        """Keep ``data`` at ``stream``'s next position and announce it."""
        policy = self.policies(stream)
        now = self.clock()
        with self._lock:
            publication = self._window(stream).append(data, policy, now)
            self.hub.announce(publication)
            if now - self._swept > self.sweep_interval:
                self._sweep(now)
        if not self._listened and not self._warned:
            self._warned = True
            logger.warning(
                "Published to %r in a process whose in-memory stream store has "
                "never had a subscriber (a shell, a cron job, a worker?): the "
                "in-memory store belongs to one process, so pages served by "
                "another never get it. Configure a store that processes share: "
                "the SQLite store on one machine, or the Redis store "
                "(docs/topics/streams.rst). Logged once per process.",
                stream,
            )
        return publication

    async def listen(self, stream: str, listener: Listener) -> None:
        """Announce ``stream``'s publications to ``listener``."""
        self._listened = True
        await super().listen(stream, listener)

    def _sweep(self, now: float) -> None:
        self._swept = now
        for stream, window in list(self._windows.items()):
            if stream in self.hub:
                continue
            window.trim(self.policies(stream), now)
            if not len(window):
                del self._windows[stream]

    async def read(self, stream: str, since: Position | None = None) -> History:
        """Return what ``stream`` published after ``since``."""
        policy = self.policies(stream)
        with self._lock:
            return self._window(stream).since(since, policy, self.clock())

    async def flush(self) -> None:
        """Forget every stream: each starts a new epoch."""
        with self._lock:
            self._windows.clear()
