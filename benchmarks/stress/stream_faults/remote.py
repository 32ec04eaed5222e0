"""Run some of a stream-faults run's clients in child processes.

The HTTP clients cost more per message than the WebSocket ones; so that
the run's own process (publisher, WebSocket clients, faults) is not what
limits them, they run in ``--client-processes`` children (no CPU affinity),
each with a replica of what its clients need: the servers (ports, up or
down), the ledger of every publication, the stop and the final positions.
The parent sends these as JSON lines on the child's stdin as they change;
the child sends back how many of its clients subscribed and drained, and
at the end what each client received, compared with its replica of the
ledger, and what happened to its connections.

Child: ``python -m benchmarks.stress.stream_faults.remote`` (reads its
first line for its options and clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.servers import ROOT
from benchmarks.stress.stream_faults.ledger import Ledger
from benchmarks.stress.stream_faults.state import Options, Run, SlotStats, reset
from django_realtime.streams.positions import Position

# -- the child ----------------------------------------------------------------


class _Address:
    """Where a server listens (what a client reads of a server)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


class _Ledgers:
    """The child's replica of the publisher: ledgers and newest positions."""

    def __init__(self, streams: list[str]) -> None:
        self.ledgers = {stream: Ledger() for stream in streams}
        self.newest: dict[str, Position] = {}


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _options(data: dict[str, Any]) -> Options:
    data = dict(data)
    for name in ("servers", "transports", "away"):
        data[name] = tuple(data[name])
    data["logs"] = None
    return Options(**data)


def _track_result(track: Any, ledger: Ledger) -> dict[str, Any]:
    counts = track.compare(ledger)
    return {
        "stream": track.stream,
        "counts": dict(counts),
        "losses": dict(track.losses),
        "errors": track.errors[:5],
        "missing": track.missing[:1000],
        "events": track.events,
    }


def _stats(stats: SlotStats) -> dict[str, Any]:
    return {
        field.name: dict(value) if isinstance(value, Counter) else value
        for field in dataclasses.fields(stats)
        for value in [getattr(stats, field.name)]
    }


async def _child() -> None:
    from benchmarks.stress.stream_faults.client import watch_stalls
    from benchmarks.stress.stream_faults.http_client import HttpClient

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    first = json.loads(await reader.readline())
    options = _options(first["options"])
    indices: list[int] = first["indices"]
    transports = options.transports
    run = Run(dataclasses.replace(options, clients=len(indices)), "", Path("."))
    replica = _Ledgers(run.streams)
    run.publisher = replica  # type: ignore[assignment]

    def servers(slots: list[list[Any]]) -> None:
        for slot, (port, up) in zip(run.slots, slots, strict=True):
            if not slot.incarnations or slot.current.port != port:
                slot.incarnations.append(_Address(port))  # type: ignore[arg-type]
            slot.up = up

    servers(first["slots"])
    clients = [
        HttpClient(i, run, options.seed, transports[i % len(transports)])
        for i in indices
    ]
    tasks = [asyncio.create_task(client.live()) for client in clients]
    tasks.append(asyncio.create_task(watch_stalls(run, clients)))  # type: ignore[arg-type]

    async def tell() -> None:
        told: tuple[int, int] = (-1, -1)
        while True:
            now = (sum(c.subscribed.is_set() for c in clients), run.drained)
            if now != told:
                _say({"subscribed": now[0], "drained": now[1]})
                told = now
            await asyncio.sleep(0.05)  # a periodic report, not an event

    tasks.append(asyncio.create_task(tell()))
    while line := await reader.readline():
        command = json.loads(line)
        if "began" in command:
            run.began = loop.time() - command["began"]
        for stream, epoch, offset, n in command.get("published", ()):
            replica.ledgers[stream].add(epoch, offset, n)
            replica.newest[stream] = Position(epoch, offset)
        if "slots" in command:
            servers(command["slots"])
        if "final" in command:
            run.final = {s: Position(*p) for s, p in command["final"].items()}
            run.stopping.set()
            for client in clients:
                client.check_drained()
        if "finish" in command:
            break
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
            with contextlib.suppress(Exception):
                reset(client.ws)
    results = [
        {
            "transport": client.transport,
            "drained": client.drained,
            "stats": {name: _stats(s) for name, s in client.stats.items()},
            "tracks": [
                _track_result(track, replica.ledgers[stream])
                for stream, track in client.tracks.items()
            ],
        }
        for client in clients
    ]
    _say({"results": results})


# -- the parent ---------------------------------------------------------------


class RemoteTrack:
    """What a child's client received of one stream, as the report reads it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.stream: str = data["stream"]
        self.counts = Counter(data["counts"])
        self.losses = Counter(data["losses"])
        self.errors: list[str] = data["errors"]
        self.missing = [tuple(item) for item in data["missing"]]
        self.events: list[str] = data["events"]

    def compare(self, ledger: Ledger) -> Counter[str]:
        """Return the counts the child made against its replica of ``ledger``."""
        return Counter(self.counts)


class RemoteClient:
    """A child's client, once the child has answered."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.transport: str = data["transport"]
        self.drained: bool = data["drained"]
        self.stats: dict[str, SlotStats] = {}
        for name, fields in data["stats"].items():
            stats = SlotStats(**fields)
            stats.closed, stats.resumes = Counter(stats.closed), Counter(stats.resumes)
            self.stats[name] = stats
        self.tracks = {t["stream"]: RemoteTrack(t) for t in data["tracks"]}


class Children:
    """The child processes of a run, and what they have said."""

    def __init__(self, run: Run, indices: list[int], processes: int) -> None:
        self.run = run
        self.shares = [indices[n::processes] for n in range(processes)]
        self.shares = [share for share in self.shares if share]
        self.processes: list[asyncio.subprocess.Process] = []
        self.subscribed = [0] * len(self.shares)
        self.all_subscribed = asyncio.Event()
        self.drained = [0] * len(self.shares)
        self.results: list[list[dict[str, Any]]] = [[] for _ in self.shares]
        self.sent: dict[str, int] = {}
        self.slots: list[list[Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def _slots(self) -> list[list[Any]]:
        return [
            [slot.current.port if slot.incarnations else 0, slot.up]
            for slot in self.run.slots
        ]

    async def start(self) -> None:
        """Start the children and their clients; forward what changes."""
        options = dataclasses.asdict(self.run.options)
        options["logs"] = None
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for number, share in enumerate(self.shares):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.stress.stream_faults.remote",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 28,
            )
            self.processes.append(process)
            self.slots = self._slots()
            first = {"options": options, "indices": share, "slots": self.slots}
            await self._send(process, first)
            self.tasks.append(asyncio.create_task(self._listen(number, process)))
        self.tasks.append(asyncio.create_task(self._forward()))

    async def _send(
        self, process: asyncio.subprocess.Process, message: dict[str, Any]
    ) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(message).encode() + b"\n")
        await process.stdin.drain()

    async def _broadcast(self, message: dict[str, Any]) -> None:
        for process in self.processes:
            with contextlib.suppress(ConnectionError):
                await self._send(process, message)

    async def _listen(self, number: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            message = json.loads(line)
            if "results" in message:
                self.results[number] = message["results"]
                return
            self.subscribed[number] = message["subscribed"]
            if self.subscribed == [len(share) for share in self.shares]:
                self.all_subscribed.set()
            drained = message["drained"] - self.drained[number]
            self.drained[number] = message["drained"]
            if drained:
                self.run.drained += drained
                if self.run.drained == self.run.options.clients:
                    self.run.all_drained.set()

    async def _forward(self) -> None:
        """Send new publications and server changes, then the stop."""
        publisher = self.run.publisher
        assert publisher is not None
        began = False
        stopped = False
        while not stopped:
            stopped = self.run.stopping.is_set()
            message: dict[str, Any] = {}
            if not began and self.run.began:
                message["began"] = self.run.since_start()
                began = True
            published = []
            for stream, ledger in publisher.ledgers.items():
                sent = self.sent.get(stream, 0)
                published += [(stream, *entry) for entry in ledger.published[sent:]]
                self.sent[stream] = len(ledger.published)
            if published:
                message["published"] = published
            slots = self._slots()
            if slots != self.slots:
                message["slots"] = self.slots = slots
            if stopped:
                message["final"] = {
                    s: [p.epoch, p.offset] for s, p in self.run.final.items()
                }
            if message:
                await self._broadcast(message)
            if not stopped:
                await asyncio.sleep(0.02)  # forwarding in batches, not an event

    async def wait_subscribed(self) -> None:
        """Wait until every child's clients have subscribed."""
        await self.all_subscribed.wait()

    async def finish(self) -> list[RemoteClient]:
        """Stop the children's clients; return what they received (60 s at most)."""
        await self._broadcast({"finish": True})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.gather(*self.tasks, return_exceptions=True)
        return [RemoteClient(data) for share in self.results for data in share]

    def kill(self) -> None:
        for task in self.tasks:
            task.cancel()
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()


if __name__ == "__main__":
    asyncio.run(_child())
