"""Break stream connections on purpose and count what clients lose or get twice.

Two server processes (one uvicorn and one daphne by default) serve
``benchmarks.streams_app``: a StreamConsumer whose history lives in Redis
under a prefix of this run's own. This process publishes to the run's
streams at a steady rate through :class:`RedisHistoryStore` (payload
``{"n": <the stream's sequence number>, "t": <time>}``), and runs the
clients: each speaks the stream protocol over a real WebSocket (the
``websockets`` library), subscribes to every stream, and then, until the
end, drops its connection at random times (mostly a TCP reset with no close
handshake, sometimes a clean close), waits a little, reconnects to a random
server and resumes from its last position. Meanwhile, optionally, the
servers' Redis connections are cut (``CLIENT KILL``, pub/sub included) and
a server process is killed with SIGKILL and started again.

Every client checks the stream as it arrives: a publication must be the one
after the last (same epoch, offset + 1) unless a ``lost`` frame or an
unrecovered ``subscribed`` said that history was lost (a signalled loss,
counted by reason). At the end the publisher stops, the clients drain, and
each client's publications are compared with what the store assigned, from
the position of its first subscription to the end:

- delivered: received once, with the payload published at that position;
- missing: neither received nor signalled (a silent loss);
- duplicates: a publication at or before the last one received;
- signalled: not received, but the client was told (by reason);
- catch-up: from the start of a reconnect until the client holds every
  publication the store had then (p50, p99, max, per server);
- stalls: connections silent for 2 s while their client is behind. A
  stalled client stops dropping that connection and waits, as a real
  client whose pings are still answered would: a stall that never ends
  leaves the client behind at the end, and what it lacks counts as missing.

Clients away for longer than the history window (``--long-away``) must be
told ``outside_window``, and after a flush of the store (``--flush-every``)
``epoch_changed``; a resume refused while the history was there counts as
unjustified. The run fails (exit status 1) on any silent loss, duplicate,
wrong payload, unjustified loss, protocol error, or client that did not
drain.

Loopback only; every wait is bounded; every server is killed and the run's
Redis keys deleted at the end, even on failure.

Run: python -m benchmarks.stream_faults [--clients 200] [--duration 60]
[--rate 50] [--servers uvicorn,daphne] [--history 250] [--drop-every 10]
[--kill-redis-every 15] [--restart-every 20]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _report
from benchmarks._servers import Server, ServerError
from django_realtime.streams.positions import Position, encode_data
from django_realtime.streams.stores.base import PolicyTable
from django_realtime.streams.stores.redis import RedisHistoryStore
from django_realtime.testing.streams import drop_redis_connections

APP = "benchmarks.streams_app:application"
SETTINGS = "benchmarks.streams_settings"
PATH = "/ws/streams/"

logger = logging.getLogger("benchmarks.stream_faults")


@dataclass(frozen=True)
class Options:
    """One run's parameters (the command's options)."""

    clients: int = 200
    duration: float = 60.0
    rate: float = 50.0
    streams: int = 1
    servers: tuple[str, ...] = ("uvicorn", "daphne")
    history: int = 250
    drop_every: float = 10.0
    clean_close: float = 0.2
    away: tuple[float, float] = (0.05, 1.0)
    long_away: float = 0.02
    kill_redis_every: float | None = 15.0
    restart_every: float | None = None
    flush_every: float | None = None
    drain_timeout: float = 30.0
    redis_url: str = "redis://127.0.0.1:6379"
    logs: Path | None = None
    seed: int | None = None

    @property
    def window_seconds(self) -> float:
        """Return how long a publication stays in each stream's history."""
        return self.history * self.streams / self.rate


# The pure bookkeeping: what was published, and one client's view of it.


class Ledger:
    """Every publication of one stream, in the order the store assigned them."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int, int]] = []
        self._rank: dict[tuple[str, int], int] = {}

    def add(self, epoch: str, offset: int, n: int) -> None:
        """Record that ``epoch:offset`` holds the payload numbered ``n``."""
        self._rank[epoch, offset] = len(self.published)
        self.published.append((epoch, offset, n))

    def rank(self, position: Position) -> float | None:
        """Return where ``position`` is in the publishing order (None: unknown).

        Offset 0 of an epoch is just before its first publication.
        """
        rank = self._rank.get((position.epoch, position.offset))
        if rank is None and position.offset == 0:
            first = self._rank.get((position.epoch, 1))
            return None if first is None else first - 0.5
        return rank

    def reached(self, position: Position | None, target: Position | None) -> bool:
        """Return whether a client at ``position`` holds everything to ``target``."""
        if position is None:
            return False
        if target is None:
            return True
        at, goal = self.rank(position), self.rank(target)
        return goal is None or (at is not None and at >= goal)


@dataclass
class Track:
    """What one client received of one stream, checked as it arrives.

    Attributes:
        first: The stream's position when the client first subscribed.
        got: Per epoch, the payload ``n`` received at each offset (-1: none).
        gaps: Publications skipped with no signal, seen as they arrived.
        signalled: Each signalled loss as the position the client was at
            and the position it was told to continue from: what the store
            published in between is lost, and the client knows it.
        events: The last subscribes, losses and connections, to explain a
            failure.
    """

    stream: str
    history: int
    first: Position | None = None
    epoch: str | None = None
    offset: int = 0
    got: dict[str, array.array[int]] = field(default_factory=dict)
    duplicates: int = 0
    gaps: int = 0
    signalled: list[tuple[Position | None, Position]] = field(default_factory=list)
    losses: Counter[str] = field(default_factory=Counter)
    unjustified: int = 0
    lost_frames: int = 0
    events: list[str] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def position(self) -> Position | None:
        """Return the position to resume from (None before the first subscribe)."""
        return None if self.epoch is None else Position(self.epoch, self.offset)

    def note(self, event: str) -> None:
        """Keep ``event`` among the last few, to explain a failure."""
        self.events.append(event)
        del self.events[:-12]

    def subscribed(self, frame: dict[str, Any], since: Position | None) -> str:
        """Take a ``subscribed`` frame; return "first", "recovered" or the reason."""
        epoch, offset = frame["epoch"], frame["offset"]
        self.note(f"at {self.epoch}:{self.offset} got {frame}")
        if since is None:
            self.first = self.first or Position(epoch, offset)
            self.epoch, self.offset = epoch, offset
            return "first"
        if frame["recovered"]:
            if epoch != since.epoch or offset - since.offset != frame["replayed"]:
                self.errors.append(f"recovered from {since} but got {frame}")
            return "recovered"
        reason = str(frame.get("reason"))
        self._signal(reason, Position(epoch, offset))
        # The client resumes from positions the server gave it: the history
        # it needs may be gone, but only by leaving the window or the epoch.
        if reason == "outside_window":
            justified = epoch == since.epoch and offset - since.offset > self.history
        else:
            justified = reason == "epoch_changed" and epoch != since.epoch
        if not justified:
            self.unjustified += 1
        return reason

    def lost(self, frame: dict[str, Any]) -> None:
        """Take a ``lost`` frame: what comes next follows its position."""
        self.lost_frames += 1
        self.note(f"at {self.epoch}:{self.offset} got {frame}")
        self._signal(str(frame["reason"]), Position(frame["epoch"], frame["offset"]))

    def _signal(self, reason: str, to: Position) -> None:
        self.losses[reason] += 1
        self.signalled.append((self.position, to))
        self.epoch, self.offset = to.epoch, to.offset

    def publication(self, epoch: str, offset: int, n: int) -> None:
        """Take a publication: the next one, a duplicate, or past a silent gap."""
        if self.epoch is None:
            self.errors.append(f"publication {epoch}:{offset} before subscribed")
            return
        if epoch == self.epoch and offset <= self.offset:
            self.duplicates += 1
            return
        if epoch != self.epoch or offset != self.offset + 1:
            self.note(f"at {self.epoch}:{self.offset} got {epoch}:{offset}: a gap")
            self.gaps += offset - self.offset - 1 if epoch == self.epoch else 1
        self.epoch, self.offset = epoch, offset
        got = self.got.get(epoch)
        if got is None:
            got = self.got[epoch] = array.array("q")
        if len(got) <= offset:
            got.extend([-1] * (offset + 1024 - len(got)))
        got[offset] = n

    def compare(self, ledger: Ledger) -> Counter[str]:
        """Count delivered, missing, signalled and wrong against ``ledger``.

        Expected: every publication after the client's first position.
        """
        counts: Counter[str] = Counter()
        if self.first is None:
            counts["never_subscribed"] += 1
            return counts
        start = ledger.rank(self.first)
        # A signal covers what was published after where the client was, up
        # to where it was told to continue (a position the store gave out).
        covered = []
        for since, to in self.signalled:
            low = None if since is None else ledger.rank(since)
            high = ledger.rank(to)
            covered.append(
                (-1.0 if low is None else low, -1.0 if high is None else high)
            )
        received = sum(1 for got in self.got.values() for n in got if n >= 0)
        for rank, (epoch, offset, n) in enumerate(ledger.published):
            if start is not None and rank <= start:
                continue
            got = self.got.get(epoch)
            value = got[offset] if got is not None and offset < len(got) else -1
            counts["expected"] += 1
            if value == n:
                counts["delivered"] += 1
            elif value >= 0:
                counts["wrong_payload"] += 1
            elif any(low < rank <= high for low, high in covered):
                counts["signalled"] += 1
            else:
                counts["missing"] += 1
                if len(self.missing) < 1000:
                    self.missing.append((epoch, offset))
        counts["unexpected"] = received - counts["delivered"] - counts["wrong_payload"]
        counts["duplicates"] = self.duplicates
        counts["gaps"] = self.gaps
        counts["unjustified"] = self.unjustified
        counts["lost_frames"] = self.lost_frames
        counts["protocol_errors"] = len(self.errors)
        return counts


# The I/O: servers, publisher, clients, faults.


class Publisher:
    """Publish to the run's streams at a steady rate, round robin."""

    def __init__(self, store: RedisHistoryStore, streams: list[str]) -> None:
        self.store = store
        self.streams = streams
        self.ledgers = {stream: Ledger() for stream in streams}
        self.newest: dict[str, Position] = {}
        self.errors = 0
        self.late = 0

    async def run(self, rate: float, seconds: float) -> None:
        """Publish ``rate`` messages a second for ``seconds``."""
        loop = asyncio.get_running_loop()
        interval = 1 / rate
        start = loop.time()
        for index in range(round(rate * seconds)):
            stream = self.streams[index % len(self.streams)]
            sequence = index // len(self.streams)
            data = encode_data({"n": sequence, "t": time.time()})
            try:
                publication = await self.store.publish(stream, data)
            except Exception:
                # Not counted in what was expected: its outcome is unknown.
                self.errors += 1
                logger.warning("Publishing to %s failed.", stream, exc_info=True)
            else:
                self.ledgers[stream].add(
                    publication.epoch, publication.offset, sequence
                )
                self.newest[stream] = publication.position
            delay = start + (index + 1) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing, not waiting for an event
            elif delay < -interval:
                self.late += 1


@dataclass
class Slot:
    """One server of the run, across its restarts."""

    name: str
    server: str
    incarnations: list[Server] = field(default_factory=list)
    up: bool = False

    @property
    def current(self) -> Server:
        return self.incarnations[-1]


class Run:
    """The state shared by the clients, the publisher and the fault makers."""

    def __init__(self, options: Options, prefix: str, logs: Path) -> None:
        self.options = options
        self.prefix = prefix
        self.logs = logs
        self.streams = [f"bench.{i}" for i in range(options.streams)]
        names = list(options.servers)
        self.slots = [
            Slot(name if names.count(name) == 1 else f"{name}{i}", name)
            for i, name in enumerate(names)
        ]
        self.env = {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "BENCH_STREAM_REDIS": options.redis_url,
            "BENCH_STREAM_PREFIX": prefix,
            "BENCH_STREAM_HISTORY": str(options.history),
        }
        self.stopping = asyncio.Event()
        self.final: dict[str, Position] = {}
        self.drained = 0
        self.all_drained = asyncio.Event()
        self.redis_kills: list[int] = []
        self.restarts = 0
        self.flushes = 0
        self.publisher: Publisher | None = None
        self.faults_off = asyncio.Event()
        self.began = asyncio.get_running_loop().time()
        self.events: list[str] = []

    def log(self, event: str) -> None:
        """Keep a fault's time, to explain what clients saw."""
        self.events.append(f"{self.since_start():.3f}s {event}")

    def since_start(self) -> float:
        """Return the seconds since publishing began."""
        return asyncio.get_running_loop().time() - self.began

    def start_server(self, slot: Slot) -> None:
        """Start (or start again) ``slot``'s server process; blocks until it listens."""
        log = self.logs / f"{slot.name}-{len(slot.incarnations)}.log"
        slot.incarnations.append(Server(slot.server, APP, self.env, None, log))
        slot.up = True

    def pick(self, rng: random.Random) -> Slot | None:
        """Return a random running server."""
        up = [slot for slot in self.slots if slot.up]
        return rng.choice(up) if up else None

    def targets(self) -> dict[str, Position]:
        """Return each stream's newest position, as the publisher knows it."""
        return dict(self.publisher.newest) if self.publisher else {}

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the run starts draining."""
        await _wait(self.stopping, seconds)

    async def faults_over(self, seconds: float) -> bool:
        """Wait ``seconds``; return True at once if faults are over."""
        return await _wait(self.faults_off, seconds)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


@dataclass
class SlotStats:
    """What happened to a client's connections on one server."""

    connects: int = 0
    connect_failures: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    resumes: Counter[str] = field(default_factory=Counter)
    catch_ups: list[float] = field(default_factory=list)
    interrupted: int = 0
    unanswered: int = 0
    stalls: int = 0
    stall_seconds: list[float] = field(default_factory=list)
    stuck: int = 0


def _reset(ws: Any) -> None:
    """Drop the connection at once: TCP reset, no close handshake."""
    transport = ws.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    transport.abort()


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

    async def live(self) -> None:
        """Connect, follow the streams, drop, reconnect; until cancelled."""
        from websockets.asyncio.client import connect

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
                    self.ws = await connect(
                        slot.current.url(PATH),
                        compression=None,
                        proxy=None,
                        open_timeout=None,
                        close_timeout=2,
                        max_size=None,
                    )
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
                    _reset(ws)
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


async def _watch_stalls(run: Run, clients: list[Client]) -> None:
    """Spot connections that stop receiving while publications go on."""
    loop = asyncio.get_running_loop()
    silence = 2.0 + 2 * len(run.streams) / run.options.rate
    while True:
        await asyncio.sleep(0.5)  # a periodic check, not waiting for an event
        now = loop.time()
        for client in clients:
            client.check_stalled(now, silence)


def _close_reason(closed: Exception) -> str:
    received = getattr(closed, "rcvd", None)
    return f"server_closed_{received.code if received is not None else 1006}"


async def _kill_redis(run: Run, every: float) -> None:
    """Cut every Redis connection of the servers' stores, every ``every`` s."""
    while not await run.faults_over(every):
        killed = await drop_redis_connections(
            run.options.redis_url, name_prefix=f"{run.prefix}-streams-"
        )
        run.redis_kills.append(killed)
        run.log(f"cut {killed} Redis connections")


async def _flush_store(run: Run, every: float) -> None:
    """Delete the run's streams every ``every`` s: each starts a new epoch."""
    assert run.publisher is not None
    while not await run.faults_over(every):
        await run.publisher.store.flush()
        run.flushes += 1
        run.log("flushed the store")


async def _restart_servers(run: Run, every: float) -> None:
    """Kill -9 the servers in turn, every ``every`` s, and start them again."""
    turn = 0
    while not await run.faults_over(every):
        slot = run.slots[turn % len(run.slots)]
        turn += 1
        slot.up = False
        slot.current.kill()
        run.restarts += 1
        run.log(f"killed {slot.name}")
        await asyncio.to_thread(run.start_server, slot)
        run.log(f"restarted {slot.name}")


@dataclass
class Outcome:
    """A run's figures, per column ("all" and each server), and its failures."""

    figures: dict[str, dict[str, float | None]]
    failures: list[str]
    logs: Path
    notes: list[str] = field(default_factory=list)
    machine: str = ""

    @property
    def total(self) -> dict[str, float | None]:
        return self.figures["all"]


ROWS = [
    _report.Row("published", "publications", "count"),
    _report.Row("rate", "  publish rate achieved, msgs/s", "rate"),
    _report.Row("expected", "expected deliveries", "count"),
    _report.Row("delivered", "delivered (once, right payload)", "count"),
    _report.Row("missing", "missing, unsignalled", "count"),
    _report.Row("duplicates", "duplicates", "count"),
    _report.Row("wrong_payload", "wrong payload", "count"),
    _report.Row("signalled", "signalled lost (the client was told)", "count"),
    _report.Row("lost_outside_window", "signals: outside_window", "count"),
    _report.Row("lost_epoch_changed", "  epoch_changed", "count"),
    _report.Row("lost_invalid_position", "  invalid_position", "count"),
    _report.Row("lost_frames", "  of which lost frames (live)", "count"),
    _report.Row("unjustified", "  not justified (too early)", "count"),
    _report.Row("connects", "connections", "count"),
    _report.Row("reconnects", "reconnects", "count"),
    _report.Row("closed_reset", "  after a reset by the client", "count"),
    _report.Row("closed_clean", "  after a clean close by the client", "count"),
    _report.Row("closed_server", "  after the server closed or died", "count"),
    _report.Row("connect_failures", "failed connection attempts", "count"),
    _report.Row("resumed", "resumes recovered", "count"),
    _report.Row("not_resumed", "resumes not recovered (signalled)", "count"),
    _report.Row("catch_up_p50", "catch-up p50, ms", "ms"),
    _report.Row("catch_up_p99", "catch-up p99, ms", "ms"),
    _report.Row("catch_up_max", "catch-up max, ms", "ms"),
    _report.Row("interrupted", "catch-ups cut by the next drop", "count"),
    _report.Row("unanswered", "connections ended before subscribed", "count"),
    _report.Row("stalls", "connections stalled (silent 2 s, behind)", "count"),
    _report.Row("stall_max", "  longest silence while behind, ms", "ms"),
    _report.Row("stuck", "  never resumed (silent until closed)", "count"),
    _report.Row("redis_kills", "Redis kills (connections cut)", "count"),
    _report.Row("redis_killed", "  connections cut", "count"),
    _report.Row("restarts", "server kill -9 and restarts", "count"),
    _report.Row("flushes", "store flushes (new epochs)", "count"),
    _report.Row("undrained", "clients not drained at the end", "count"),
    _report.Row("protocol_errors", "protocol errors", "count"),
    _report.Row("server_pubsub", "server log: pub/sub connection down", "count"),
    _report.Row("server_resyncs", "  streams resynced after it", "count"),
    _report.Row("server_gaps", "  gaps noticed in live offsets", "count"),
    _report.Row("server_warnings", "  other warnings and errors", "count"),
]


def _catch_up_figures(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"catch_up_p50": None, "catch_up_p99": None, "catch_up_max": None}
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "catch_up_p50": statistics.median(ordered) * 1000,
        "catch_up_p99": p99 * 1000,
        "catch_up_max": ordered[-1] * 1000,
    }


def _server_log(slot: Slot) -> dict[str, float | None]:
    """Count the warnings (and errors) and the gaps noticed in a server's logs."""
    counts: dict[str, float | None] = dict.fromkeys(
        ("server_pubsub", "server_resyncs", "server_gaps", "server_warnings"), 0
    )
    for server in slot.incarnations:
        for line in server.output.splitlines():
            level, _, rest = line.partition(" ")
            if "Redis pub/sub" in rest:
                # The layer's subscriber says so on each Redis kill.
                key = "server_pubsub" if "is down" in rest else ""
            elif level in ("WARNING", "ERROR", "CRITICAL"):
                key = "server_warnings"
            elif level == "INFO" and ": Gap in " in rest:
                key = "server_gaps"
            elif level == "INFO" and "may have been lost" in rest:
                key = "server_resyncs"
            else:
                continue
            if key:
                counts[key] = (counts[key] or 0) + 1
    return counts


def summarise(
    run: Run, clients: list[Client], elapsed: float, publisher: Publisher
) -> Outcome:
    """Compare every client with what was published; return the figures."""
    totals: Counter[str] = Counter()
    losses: Counter[str] = Counter()
    errors: list[str] = []
    for client in clients:
        for stream, track in client.tracks.items():
            totals.update(track.compare(publisher.ledgers[stream]))
            losses.update(track.losses)
            errors.extend(track.errors)
    published = sum(len(ledger.published) for ledger in publisher.ledgers.values())
    figures: dict[str, dict[str, float | None]] = {"all": {}}
    every: list[float] = []
    for slot in run.slots:
        stats = [client.stats[slot.name] for client in clients]
        column: dict[str, float | None] = {
            "connects": sum(s.connects for s in stats),
            "connect_failures": sum(s.connect_failures for s in stats),
            "resumed": sum(s.resumes["recovered"] for s in stats),
            "not_resumed": sum(
                sum(s.resumes.values()) - s.resumes["recovered"] for s in stats
            ),
            "interrupted": sum(s.interrupted for s in stats),
            "unanswered": sum(s.unanswered for s in stats),
            "stalls": sum(s.stalls for s in stats),
            "stuck": sum(s.stuck for s in stats),
            "closed_reset": sum(s.closed["reset"] for s in stats),
            "closed_clean": sum(s.closed["clean"] for s in stats),
            "closed_server": sum(
                n
                for s in stats
                for how, n in s.closed.items()
                if how.startswith("server_closed")
            ),
        }
        column.update(_server_log(slot))
        stalls = [t for s in stats for t in s.stall_seconds]
        column["stall_max"] = max(stalls, default=0.0) * 1000
        seconds = [t for s in stats for t in s.catch_ups]
        every += seconds
        column.update(_catch_up_figures(seconds))
        figures[slot.name] = column
    total = figures["all"]
    for key in figures[run.slots[0].name]:
        if not key.startswith(("catch_up", "stall_max")):
            total[key] = sum(figures[s.name][key] or 0 for s in run.slots)
    longest = [figures[s.name]["stall_max"] for s in run.slots]
    total["stall_max"] = max((t or 0.0 for t in longest), default=0.0)
    total.update(_catch_up_figures(every))
    total["reconnects"] = (total["connects"] or 0) - len(clients)
    total["published"] = published
    total["rate"] = published / elapsed if elapsed else None
    for key in ("expected", "delivered", "missing", "duplicates", "wrong_payload"):
        total[key] = totals[key]
    total["signalled"] = totals["signalled"]
    for reason in ("outside_window", "epoch_changed", "invalid_position"):
        total[f"lost_{reason}"] = losses[reason]
    total["unjustified"] = totals["unjustified"]
    total["lost_frames"] = totals["lost_frames"]
    total["flushes"] = run.flushes
    total["redis_kills"] = len(run.redis_kills)
    total["redis_killed"] = sum(run.redis_kills)
    total["restarts"] = run.restarts
    total["undrained"] = sum(1 for c in clients if not c.drained)
    total["protocol_errors"] = totals["protocol_errors"]

    failures = []
    for key, what in (
        ("missing", "publications lost without a signal"),
        ("gaps", "publications skipped with no signal, seen live"),
        ("duplicates", "publications received twice"),
        ("wrong_payload", "publications with another position's payload"),
        ("unexpected", "publications received that nobody expected"),
        ("unjustified", "losses signalled while the history was there"),
        ("never_subscribed", "clients that never subscribed"),
        ("protocol_errors", "protocol errors"),
    ):
        if totals[key]:
            failures.append(f"{totals[key]} {what}")
    if total["stuck"]:
        failures.append(
            f"{total['stuck']} connections stopped delivering while their client "
            "was behind, and never resumed (silent until the server closed them "
            "or the run ended)"
        )
    if total["undrained"]:
        failures.append(f"{total['undrained']} clients did not catch up at the end")
    if publisher.errors:
        failures.append(f"{publisher.errors} publishes failed")
    failures += errors[:5]
    failing = [t for c in clients for t in c.tracks.values() if t.missing]
    for track in failing[:3]:
        failures.append(
            f"e.g. a client of {track.stream} missed {_ranges(track.missing)}; "
            "its last events:\n      " + "\n      ".join(track.events)
        )
    notes = []
    stalled = sorted(
        (c for c in clients if any(s.stalls for s in c.stats.values())),
        key=lambda c: -sum(s.stuck for s in c.stats.values()),
    )
    for client in stalled[:2]:
        track = next(iter(client.tracks.values()))
        notes.append(
            f"e.g. a stalled client of {track.stream}, its last events:\n      "
            + "\n      ".join(track.events)
        )
    if notes or failures:
        notes.append("Faults: " + "; ".join(run.events))
    return Outcome(figures, failures, run.logs, notes)


def _ranges(positions: list[tuple[str, int]]) -> str:
    """Return ``[(e, 1), (e, 2), (e, 3), (e, 7)]`` as ``e:1-3, e:7``."""
    parts: list[str] = []
    run: list[tuple[str, int]] = []
    for position in [*positions, ("", -1)]:
        if run and (position[0] != run[-1][0] or position[1] != run[-1][1] + 1):
            low, high = run[0][1], run[-1][1]
            parts.append(f"{run[0][0]}:{low}" + (f"-{high}" if high != low else ""))
            run = []
        run.append(position)
    return ", ".join(parts)


def report(outcome: Outcome, options: Options) -> str:
    """Return the run's table and verdict, as printed."""
    columns = [("all", "servers")] + [
        (name, "server") for name in outcome.figures if name != "all"
    ]
    results = {(name, app): outcome.figures[name] for name, app in columns}
    lines = [
        outcome.machine,
        f"{options.clients} clients, {options.streams} stream(s), "
        f"{options.duration:g} s at {options.rate:g} msgs/s, history "
        f"{options.history} per stream ({options.window_seconds:.1f} s); a drop "
        f"every {options.drop_every:g} s per client on average "
        f"({options.clean_close:.0%} clean, {options.long_away:.0%} away past the "
        f"window); Redis kill every {options.kill_redis_every or '-'} s; "
        f"restart every {options.restart_every or '-'} s; flush every "
        f"{options.flush_every or '-'} s",
        "",
        _report.table(results, columns, ROWS),
        "",
    ]
    checks = [
        _report.Check("missing", outcome.total["missing"], 0, at_most=True),
        _report.Check("duplicates", outcome.total["duplicates"], 0, at_most=True),
    ]
    verdict = "PASS" if not outcome.failures else "FAIL"
    lines.append(f"{verdict}  " + "; ".join(str(check) for check in checks))
    lines += [f"  {failure}" for failure in outcome.failures]
    lines += outcome.notes
    return "\n".join(lines)


async def run(options: Options) -> Outcome:
    """Run the servers, the publisher, the clients and the faults; compare."""
    prefix = f"bsf{uuid.uuid4().hex[:10]}"
    logs = options.logs or Path(tempfile.mkdtemp(prefix="stream_faults-"))
    logs.mkdir(parents=True, exist_ok=True)
    state = Run(options, prefix, logs)
    store = RedisHistoryStore(
        options.redis_url,
        prefix=prefix,
        policies=PolicyTable(
            {"*": {"max_count": options.history, "max_bytes": None, "max_age": None}}
        ),
        # Not under "<prefix>-streams-": the Redis kills spare the publisher.
        client_name=f"{prefix}-publisher",
    )
    publisher = state.publisher = Publisher(store, state.streams)
    tasks: list[asyncio.Task[None]] = []
    machine = (
        f"{time.strftime('%Y-%m-%d %H:%M')}  Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load at the start "
        + " ".join(f"{n:.2f}" for n in os.getloadavg())
    )
    try:
        for slot in state.slots:
            await asyncio.to_thread(state.start_server, slot)
        clients = [Client(i, state, options.seed) for i in range(options.clients)]
        tasks += [asyncio.create_task(client.live()) for client in clients]
        tasks.append(asyncio.create_task(_watch_stalls(state, clients)))
        async with asyncio.timeout(30):
            for client in clients:
                await client.subscribed.wait()
        faults = [
            asyncio.create_task(fault(state, every))
            for every, fault in (
                (options.kill_redis_every, _kill_redis),
                (options.restart_every, _restart_servers),
                (options.flush_every, _flush_store),
            )
            if every
        ]
        loop = asyncio.get_running_loop()
        began = state.began = loop.time()
        await publisher.run(options.rate, options.duration)
        elapsed = loop.time() - began
        # Let a restart under way finish; start any server still down.
        state.faults_off.set()
        fault_errors = [
            error
            for error in await asyncio.gather(*faults, return_exceptions=True)
            if error is not None
        ]
        for slot in state.slots:
            if not slot.up:
                await asyncio.to_thread(state.start_server, slot)
        state.final = dict(publisher.newest)
        state.stopping.set()
        for client in clients:
            client.check_drained()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(options.drain_timeout):
                await state.all_drained.wait()
        now = loop.time()
        for client in clients:
            if client.current is not None and client.silent_from is not None:
                client.current.stall_seconds.append(now - client.silent_from)
                client.current.stuck += 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            if client.ws is not None:
                _reset(client.ws)
        for stream, newest in state.final.items():
            history = await store.read(stream)
            if history.position != newest:
                publisher.errors += 1
                logger.warning("%s ends at %s, not %s.", stream, history, newest)
        outcome = summarise(state, clients, elapsed, publisher)
        load = " ".join(f"{n:.2f}" for n in os.getloadavg())
        outcome.machine = f"{machine}; load at the end {load}"
        outcome.failures += [f"A fault injector failed: {e!r}" for e in fault_errors]
        return outcome
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in state.slots:
            for server in slot.incarnations:
                server.kill()
        with contextlib.suppress(Exception):
            await store.flush()
        await store.close()


def _seconds_or_none(text: str) -> float | None:
    value = float(text)
    return value if value > 0 else None


def parse_args(argv: list[str] | None) -> Options:
    """Return the run's options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_faults",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    defaults = Options()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="publications per second"
    )
    parser.add_argument("--streams", type=int, default=defaults.streams)
    parser.add_argument("--servers", default=",".join(defaults.servers))
    parser.add_argument(
        "--history", type=int, default=defaults.history, help="kept per stream"
    )
    parser.add_argument(
        "--drop-every",
        type=float,
        default=defaults.drop_every,
        help="mean seconds between a client's drops",
    )
    parser.add_argument(
        "--clean-close",
        type=float,
        default=defaults.clean_close,
        help="share of drops that close cleanly (the rest reset the TCP connection)",
    )
    parser.add_argument(
        "--long-away",
        type=float,
        default=defaults.long_away,
        help="share of drops that stay away past the history window",
    )
    parser.add_argument(
        "--kill-redis-every",
        type=_seconds_or_none,
        default=defaults.kill_redis_every,
        help="seconds between cuts of the servers' Redis connections (0: never)",
    )
    parser.add_argument(
        "--restart-every",
        type=_seconds_or_none,
        default=defaults.restart_every,
        help="seconds between kill -9 and restart of a server (0: never)",
    )
    parser.add_argument(
        "--flush-every",
        type=_seconds_or_none,
        default=defaults.flush_every,
        help="seconds between flushes of the store, new epochs (0: never)",
    )
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument("--redis-url", default=defaults.redis_url)
    parser.add_argument("--logs", type=Path, default=None, help="keep server logs here")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    servers = tuple(name for name in args.servers.split(",") if name)
    for name in servers:
        if name not in ("uvicorn", "daphne"):
            parser.error(f"Expected servers among uvicorn,daphne, got {name!r}.")
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.history < 1:
        parser.error("--clients, --rate, --duration and --history must be positive.")
    return Options(
        clients=args.clients,
        duration=args.duration,
        rate=args.rate,
        streams=args.streams,
        servers=servers,
        history=args.history,
        drop_every=args.drop_every,
        clean_close=args.clean_close,
        long_away=args.long_away,
        kill_redis_every=args.kill_redis_every,
        restart_every=args.restart_every,
        flush_every=args.flush_every,
        drain_timeout=args.drain_timeout,
        redis_url=args.redis_url,
        logs=args.logs,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Run once, print the table; return 1 on any silent loss or duplicate."""
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        outcome = asyncio.run(run(options))
    except ServerError as error:
        print(f"A server failed: {error}", file=sys.stderr)
        return 2
    print(report(outcome, options))
    if outcome.failures or options.logs is not None:
        print(f"Server logs: {outcome.logs}")
    else:
        shutil.rmtree(outcome.logs, ignore_errors=True)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
