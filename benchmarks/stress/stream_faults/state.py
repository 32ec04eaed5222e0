"""The state of a stream-faults run, shared by its publisher, clients and faults.

:class:`Options` are the command's; a :class:`Run` holds the servers (one
:class:`Slot` per server, across its restarts), the streams and what the
run has done so far; the :class:`Publisher` publishes at a steady rate and
keeps, in a ledger per stream, what the store assigned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.servers import Server
from benchmarks.stress.stream_faults.ledger import Ledger
from django_realtime.streams.positions import Position, encode_data
from django_realtime.streams.stores.redis import RedisHistoryStore

APP = "benchmarks.stress.stream_faults.app:application"
SETTINGS = "benchmarks.stress.stream_faults.settings"
PATH = "/ws/streams/"
HTTP_PREFIX = "/rt/streams/"
TRANSPORTS = ("websocket", "sse", "poll")

logger = logging.getLogger("benchmarks.stress.stream_faults")


@dataclass(frozen=True)
class Options:
    """One run's parameters (the command's options)."""

    clients: int = 200
    duration: float = 60.0
    rate: float = 50.0
    streams: int = 1
    servers: tuple[str, ...] = ("uvicorn", "daphne")
    # The clients take these in turn: client i speaks transports[i % n].
    transports: tuple[str, ...] = TRANSPORTS
    # Processes the HTTP clients are spread over (0: this one).
    client_processes: int = 2
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
        await wait_for(self.stopping, seconds)

    async def faults_over(self, seconds: float) -> bool:
        """Wait ``seconds``; return True at once if faults are over."""
        return await wait_for(self.faults_off, seconds)


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
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


def reset(ws: Any) -> None:
    """Drop the connection at once: TCP reset, no close handshake."""
    transport = ws.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    transport.abort()
