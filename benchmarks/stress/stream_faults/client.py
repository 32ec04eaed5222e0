"""A stream-faults client: it drops and resumes until the run ends, checking frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

from benchmarks.stress.stream_faults.ledger import Track
from benchmarks.stress.stream_faults.state import (
    PATH,
    Run,
    SlotStats,
    reset,
)
from django_realtime.streams.positions import Position


def _close_reason(closed: Exception) -> str:
    received = getattr(closed, "rcvd", None)
    return f"server_closed_{received.code if received is not None else 1006}"


class Client:
    """One stream protocol client that drops and resumes until the run ends."""

    def __init__(self, index: int, run: Run, seed: int | None) -> None:
        self.run = run
        self.rng = random.Random(None if seed is None else seed + index)
        options = run.options
        self.tracks = {s: Track(s, options.history) for s in run.streams}
        self.stats: dict[str, SlotStats] = {s.name: SlotStats() for s in run.slots}
        self.subscribed = asyncio.Event()
        self.drained = False
        self.ws: Any = None
        # The connection's state, for the stall watchdog.
        self.current: SlotStats | None = None
        self.pending: dict[int, tuple[Track, Position | None]] = {}
        self.last_frame = 0.0
        self.stalled = False
        self.silent_from: float | None = None

    def check_drained(self) -> None:
        """Count this client drained once it holds every final publication."""
        if self.drained or not self.run.final:
            return
        if self._reached(self.run.final):
            self.drained = True
            self.run.drained += 1
            if self.run.drained == self.run.options.clients:
                self.run.all_drained.set()

    def _reached(self, targets: dict[str, Position]) -> bool:
        """Return whether every stream is at or past its target."""
        assert self.run.publisher is not None
        ledgers = self.run.publisher.ledgers
        return all(
            ledgers[stream].reached(self.tracks[stream].position, target)
            for stream, target in targets.items()
        )

    def _note(self, event: str) -> None:
        when = self.run.since_start()
        for track in self.tracks.values():
            track.note(f"{when:.3f}s {event}")

    #: The transport this client speaks (see ``http_client`` for the others).
    transport = "websocket"

    async def _open(self, url: str) -> Any:
        """Return a new connection to the server at ``url``."""
        from websockets.asyncio.client import connect

        return await connect(
            url,
            compression=None,
            proxy=None,
            open_timeout=None,
            close_timeout=2,
            max_size=None,
        )

    async def live(self) -> None:
        """Connect, follow the streams, drop, reconnect; until cancelled."""
        options = self.run.options
        first = True
        while not self.drained:
            slot = self.run.pick(self.rng)
            if slot is None:
                await asyncio.sleep(0.1)  # a restart is under way
                continue
            stats = self.stats[slot.name]
            loop = asyncio.get_running_loop()
            started = loop.time()
            targets = None if first else self.run.targets()
            try:
                async with asyncio.timeout(10):
                    self.ws = await self._open(slot.current.url(PATH))
            except Exception:
                # A server being killed, or too busy to answer in time.
                stats.connect_failures += 1
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))
                continue
            stats.connects += 1
            self._note(f"connected to {slot.name}")
            first = False
            ending = self.rng.expovariate(1 / options.drop_every)
            self.current, self.stalled = stats, False
            self.last_frame = loop.time()
            how = await self._follow(stats, started, targets, started + ending)
            self.current = None
            if self.silent_from is not None:
                # Silent until the server closed it (or died): never resumed.
                stats.stall_seconds.append(loop.time() - self.silent_from)
                self.silent_from = None
                if how.startswith("server_closed"):
                    stats.stuck += 1
            stats.closed[how] += 1
            if self.pending:
                stats.unanswered += 1
            self._note(f"connection to {slot.name} ended: {how}")
            if how in ("reset", "clean"):
                away = self.rng.uniform(*options.away)
                if self.rng.random() < options.long_away:
                    away = options.window_seconds * 1.5 + 0.5
                await self.run.pause(away)

    async def _follow(
        self,
        stats: SlotStats,
        started: float,
        targets: dict[str, Position] | None,
        deadline: float,
    ) -> str:
        """Follow the streams on one connection; return how it ended."""
        from websockets.exceptions import ConnectionClosed

        ws = self.ws
        pending = self.pending = {}
        loop = asyncio.get_running_loop()
        for number, track in enumerate(self.tracks.values(), 1):
            since = track.position
            pending[number] = (track, since)
            frame: dict[str, Any] = {
                "kind": "subscribe",
                "id": number,
                "stream": track.stream,
            }
            if since is not None:
                frame["since"] = {"epoch": since.epoch, "offset": since.offset}
            try:
                await ws.send(json.dumps(frame))
            except ConnectionClosed as closed:
                return _close_reason(closed)
        catching = targets is not None
        try:
            while True:
                try:
                    keep = self.run.stopping.is_set() or self.stalled
                    limit = None if keep else deadline
                    async with asyncio.timeout_at(limit):
                        async for text in ws:
                            self.last_frame = loop.time()
                            if self.silent_from is not None:
                                stats.stall_seconds.append(
                                    self.last_frame - self.silent_from
                                )
                                self.silent_from = None
                            frame = json.loads(text)
                            kind = frame["kind"]
                            if kind == "publication":
                                self.tracks[frame["stream"]].publication(
                                    frame["epoch"], frame["offset"], frame["data"]["n"]
                                )
                            elif kind == "subscribed":
                                track, since = pending.pop(frame["id"])
                                outcome = track.subscribed(frame, since)
                                if outcome != "first":
                                    stats.resumes[outcome] += 1
                                if not pending:
                                    self.subscribed.set()
                            elif kind == "lost":
                                self.tracks[frame["stream"]].lost(frame)
                            else:
                                track = next(iter(self.tracks.values()))
                                track.errors.append(f"unexpected frame {text[:200]}")
                            if catching and not pending:
                                assert targets is not None
                                if self._reached(targets):
                                    catching = False
                                    stats.catch_ups.append(loop.time() - started)
                            if not pending:
                                self.check_drained()
                    return "server_closed_1000"
                except TimeoutError:
                    if self.run.stopping.is_set() or self.stalled:
                        # Draining, or stalled: a real client that hears
                        # nothing but pongs waits too, so drop no more.
                        continue
                    if catching:
                        stats.interrupted += 1
                    if self.rng.random() < self.run.options.clean_close:
                        with contextlib.suppress(Exception):
                            await ws.close()
                        return "clean"
                    reset(ws)
                    return "reset"
        except ConnectionClosed as closed:
            if catching:
                stats.interrupted += 1
            return _close_reason(closed)

    def check_stalled(self, now: float, silence: float) -> None:
        """Count the connection stalled if silent for ``silence`` s while behind."""
        if (
            self.current is None
            or self.stalled
            or now - self.last_frame < silence
            or self._reached(self.run.targets())
        ):
            return
        self.stalled = True
        self.silent_from = self.last_frame
        self.current.stalls += 1
        self._note(f"stalled: nothing for {now - self.last_frame:.1f} s while behind")


async def watch_stalls(run: Run, clients: list[Client]) -> None:
    """Spot connections that stop receiving while publications go on."""
    loop = asyncio.get_running_loop()
    silence = 2.0 + 2 * len(run.streams) / run.options.rate
    while True:
        await asyncio.sleep(0.5)  # a periodic check, not waiting for an event
        now = loop.time()
        for client in clients:
            client.check_stalled(now, silence)
