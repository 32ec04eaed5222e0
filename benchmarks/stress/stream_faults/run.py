"""Break stream connections on purpose and count what clients lose or get twice.

Two server processes (one uvicorn and one daphne by default) serve
``benchmarks.stress.stream_faults.app``: a StreamConsumer whose history lives in Redis
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

Run: python -m benchmarks.stress.stream_faults [--clients 200] [--duration 60]
[--rate 50] [--servers uvicorn,daphne] [--history 250] [--drop-every 10]
[--kill-redis-every 15] [--restart-every 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import shutil
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.servers import Server, ServerError
from benchmarks.stress.stream_faults.ledger import Ledger, Track
from benchmarks.stress.stream_faults.report import Outcome, report, summarise
from django_realtime.streams.positions import Position, encode_data
from django_realtime.streams.stores.base import PolicyTable
from django_realtime.streams.stores.redis import RedisHistoryStore
from django_realtime.testing.streams import drop_redis_connections

APP = "benchmarks.stress.stream_faults.app:application"
SETTINGS = "benchmarks.stress.stream_faults.settings"
PATH = "/ws/streams/"

logger = logging.getLogger("benchmarks.stress.stream_faults")


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
        prog="python -m benchmarks.stress.stream_faults",
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
