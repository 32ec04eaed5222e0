"""A process's side of presence: its connections, heartbeats, sweeps, diffs.

A :class:`Tracker` holds the connections this process tracks, applies
their arrivals and departures to the backend, and publishes the resulting
changes, gathered for ``BATCH`` seconds, as one diff per stream on the
stream's presence stream (``presence:<stream>``, :func:`~.model.presence_stream`).

- A departing connection stays a member for ``GRACE`` seconds, so a page
  that reconnects (to this process or another) causes no leave and join.
- A connection joined with its own id (a client of the HTTP transports)
  belongs to the process that tracked it last: the grace period of
  another process that served it before removes nothing.
- Every ``min(EXPIRY / 3, GRACE / 2)`` seconds, give or take a fifth, a
  tracker on a shared backend beats, and sweeps the processes that have
  not beaten for ``EXPIRY`` seconds (a process killed with ``kill -9``).
- A failed backend step (Redis unreachable) marks the tracker out of sync:
  at its next beat that succeeds it makes the backend hold exactly its
  connections again, which is also what it does when it learns that others
  swept it meanwhile. A diff that failed to publish is published then too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from django_realtime.presence.backends import PresenceBackend
from django_realtime.presence.model import (
    MAX_INFO_BYTES,
    Batch,
    Change,
    diff_data,
    presence_stream,
)
from django_realtime.streams.positions import encode_data
from django_realtime.streams.stores.base import HistoryStore

__all__ = [
    "DIFF_SIZE",
    "PresenceOptions",
    "SnapshotReply",
    "Tracker",
    "presence_options",
]

logger = logging.getLogger("django_realtime.presence")

#: Most members in one diff publication; a bigger burst is several.
DIFF_SIZE = 500


class SnapshotReply(dict[str, Any]):
    """The reply to ``presence.members``: ``stream``, ``version``, ``members``.

    A dict, with its JSON text made once (:attr:`encoded`) for every
    connection that shares the read.
    """

    def __init__(self, stream: str, version: int, members: dict[str, Any]) -> None:
        super().__init__(stream=stream, version=version, members=members)
        self._encoded: str | None = None

    @property
    def encoded(self) -> str:
        """Return the reply's JSON text (made at first use)."""
        if self._encoded is None:
            self._encoded = json.dumps(self, separators=(",", ":"))
        return self._encoded


@dataclass(frozen=True)
class PresenceOptions:
    """``REALTIME["PRESENCE"]``: seconds and bytes (docs/topics/presence.rst)."""

    expiry: float = 30.0
    grace: float = 5.0
    batch: float = 0.2
    max_info_bytes: int = MAX_INFO_BYTES

    def __post_init__(self) -> None:
        for name in ("expiry", "grace", "batch", "max_info_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"Expected PRESENCE {name.upper()} as a number, got {value!r}."
                )
            if value < 0 or (name in ("expiry", "max_info_bytes") and value == 0):
                raise ValueError(
                    f"Expected PRESENCE {name.upper()} > 0, got {value!r}."
                )

    @property
    def interval(self) -> float:
        """Return the seconds between two beats."""
        beat = self.expiry / 3
        if self.grace:
            beat = min(beat, self.grace / 2)
        return max(beat, 0.02)


def presence_options() -> PresenceOptions:
    """Return the options of ``REALTIME["PRESENCE"]`` (defaults where unset)."""
    raw = (getattr(settings, "REALTIME", None) or {}).get("PRESENCE", {})
    return PresenceOptions(
        **{k.lower(): v for k, v in raw.items()},
    )


class Tracker:
    """Track this process's connections on ``backend``; publish on ``store``."""

    def __init__(
        self,
        store: HistoryStore,
        backend: PresenceBackend,
        options: PresenceOptions,
    ) -> None:
        self.store = store
        self.backend = backend
        self.options = options
        #: This process, as the backend knows it.
        self.process = secrets.token_hex(6)
        #: Connection id -> (stream, member key, info) of every tracked one.
        self.connections: dict[str, tuple[str, str, str]] = {}
        #: Connections that departed -> when they stop counting.
        self.departed: dict[str, float] = {}
        # Connections joined with their id -> joins not yet left.
        self._holds: dict[str, int] = {}
        self.streams: set[str] = set()
        self.batch = Batch()
        self._count = 0
        self._dirty = False
        self._beaten = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush: asyncio.Task[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Snapshot requests waiting for the next read, and reads under way.
        self._snapshots: dict[str, asyncio.Future[SnapshotReply]] = {}
        self._reading: dict[str, asyncio.Future[Any]] = {}

    # -- connections ----------------------------------------------------

    async def join(
        self, stream: str, key: str, info: str, *, conn: str | None = None
    ) -> str:
        """Track a connection of member ``key`` to ``stream``; return its id.

        Without ``conn``, a new connection of this process, or one of
        ``key`` on ``stream`` that departed within the grace period. With
        ``conn``, that connection, which may come and go on several
        processes (``http/<client id>/<stream>``, say): this process
        becomes its owner (:class:`~.model.Roster`), with no change if it
        was tracked anywhere, and it stays here until :meth:`leave` was
        called as many times as this.
        """
        self._start()
        if conn is None:
            for old, _deadline in list(self.departed.items()):
                if self.connections[old][:2] == (stream, key):
                    # Back within the grace period, here: nothing changes.
                    del self.departed[old]
                    return old
            self._count += 1
            conn = f"{self.process}/{self._count}"
        else:
            self.departed.pop(conn, None)
            self._holds[conn] = self._holds.get(conn, 0) + 1
        self.connections[conn] = (stream, key, info)
        try:
            if self.backend.shared and stream not in self.streams:
                await self.backend.heartbeat(self.process, {stream})
                self._beaten = True
            self.streams.add(stream)
            self.changed(
                stream, await self.backend.track(stream, conn, key, info, self.process)
            )
        except Exception as exc:
            self._failed("track a connection", exc)
        return conn

    def leave(self, conn: str) -> None:
        """Stop counting connection ``conn`` once the grace period is over."""
        if conn not in self.connections or conn in self.departed:
            return
        holds = self._holds.pop(conn, 1)
        if holds > 1:
            self._holds[conn] = holds - 1
            return
        loop = self._start()
        self.departed[conn] = loop.time() + self.options.grace
        self._spawn(self._after(self.options.grace, self._expire))

    async def _expire(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        # Taken before any await: two of these running at once share nothing.
        due = [conn for conn, deadline in self.departed.items() if deadline <= now]
        for conn in due:
            del self.departed[conn]
        for conn in due:
            stream = self.connections.pop(conn)[0]
            try:
                changes = await self.backend.untrack(stream, conn, self.process)
                self.changed(stream, changes)
            except Exception as exc:
                self._failed("untrack a connection", exc)

    async def snapshot(self, stream: str) -> SnapshotReply:
        """Return the reply to ``presence.members`` for ``stream``, read now.

        Read after the call: requests that arrive while a read is under way
        wait for the next one, which they all share, encoded once.
        """
        waiting = self._snapshots.get(stream)
        if waiting is None:
            waiting = asyncio.get_running_loop().create_future()
            self._snapshots[stream] = waiting
            self._spawn(self._read_snapshot(stream, waiting))
        return await asyncio.shield(waiting)

    async def _read_snapshot(
        self, stream: str, waiting: asyncio.Future[SnapshotReply]
    ) -> None:
        previous = self._reading.get(stream)
        if previous is not None:
            await asyncio.wait([previous])
        # From here on, new requests wait for the read after this one.
        del self._snapshots[stream]
        reading = self._reading[stream] = asyncio.ensure_future(
            self.backend.snapshot(stream)
        )
        try:
            version, members = await reading
            waiting.set_result(SnapshotReply(stream, version, members))
        except Exception as exc:
            waiting.set_exception(exc)
        finally:
            if self._reading.get(stream) is reading:
                del self._reading[stream]

    # -- diffs ----------------------------------------------------------

    def changed(self, stream: str, changes: list[Change]) -> None:
        """Publish ``changes`` of ``stream`` with the next diff."""
        if not changes:
            return
        self.batch.add(stream, changes)
        if self._flush is None and self._loop is not None:
            self._flush = self._spawn(self._after(self.options.batch, self.flush))

    async def flush(self) -> None:
        """Publish the diffs that wait; keep those that fail for the next beat."""
        self._flush = None
        for stream, records in self.batch.take().items():
            items = list(records.items())
            for start in range(0, len(items), DIFF_SIZE):
                part = dict(items[start : start + DIFF_SIZE])
                try:
                    text = encode_data(diff_data(part))
                    await self.store.publish(presence_stream(stream), text)
                except Exception as exc:
                    self.batch.add(stream, [Change(k, r) for k, r in part.items()])
                    self._failed("publish a presence diff", exc, dirty=False)
                    continue
                try:
                    versions = {k: r.version for k, r in part.items()}
                    await self.backend.published(stream, versions)
                except Exception as exc:
                    # Published again by a sweep, at worst: diffs are idempotent.
                    self._failed("mark a diff published", exc, dirty=False)

    # -- beats ----------------------------------------------------------

    async def beat(self) -> None:
        """Beat, sync if out of sync, sweep the silent processes, publish."""
        await self._expire()
        if self.backend.shared:
            try:
                unknown = await self.backend.heartbeat(self.process, self.streams)
                if unknown and self._beaten:
                    logger.warning(
                        "Presence: process %s was swept (silent for over %s s); "
                        "tracking its %d connections again.",
                        self.process,
                        self.options.expiry,
                        len(self.connections),
                    )
                    self._dirty = True
                self._beaten = True
                if self._dirty:
                    await self._sync()
                swept = await self.backend.sweep(self.process, self.options.expiry)
                for stream, changes in swept.items():
                    self.changed(stream, changes)
            except Exception as exc:
                self._failed("beat", exc)
        if self.batch:
            await self.flush()

    async def _sync(self) -> None:
        for stream in sorted(self.streams):
            mine = {
                conn: (key, info)
                for conn, (s, key, info) in self.connections.items()
                if s == stream
            }
            self.changed(stream, await self.backend.sync(stream, self.process, mine))
            if not mine:
                self.streams.discard(stream)
        self._dirty = False
        logger.info("Presence: process %s is in sync again.", self.process)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.options.interval * random.uniform(0.8, 1.2))
            await self.beat()

    # -- plumbing -------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._flush = None
            self._task = loop.create_task(self._run(), name="presence-beat")
        return loop

    @staticmethod
    async def _after(delay: float, then: Callable[[], Awaitable[None]]) -> None:
        # A task from the start, not a timer that makes one: a loop that
        # ends cancels it, where a task made as the loop ends would be lost.
        await asyncio.sleep(delay)
        await then()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _failed(self, what: str, exc: BaseException, *, dirty: bool = True) -> None:
        if dirty:
            self._dirty = True
        logger.warning(
            "Presence: could not %s (%r); will retry at the next beat.", what, exc
        )

    async def stop(self) -> None:
        """Stop beating (tests, shutdown); the backend forgets nothing."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
