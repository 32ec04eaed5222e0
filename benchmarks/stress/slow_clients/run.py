"""Stop one client's reading while 1,000 others receive a broadcast: who pays?

For each server (uvicorn, daphne) and each way a broadcast reaches the
connections, a fresh server process serves ``benchmarks.stress.slow_clients.app``
and this process runs the clients over real WebSockets (the ``websockets``
library) on loopback:

``stream catch_up`` / ``stream close``
    Every client subscribes to the stream ``bench.0`` of a
    :class:`~django_realtime.streams.StreamConsumer` whose queue holds
    ``--max-queued`` publications, with that slow-client policy. This
    process publishes through ``RedisHistoryStore.publish``.
``group``
    Every client is an ``AsyncJsonWebsocketConsumer`` in the group
    ``bench`` of the Redis channel layer (``--capacity`` messages per
    channel); this process publishes with ``group_send``.

Each run connects ``--readers`` clients that read everything and, except
for the baseline run, some clients that stop reading once subscribed: the
client's transport stops reading, its socket has a small receive buffer
(``--rcvbuf``) and announces an Ethernet MSS (``--mss``), as a client on
the internet would; on loopback the MSS is 64 KiB and the server's kernel
would otherwise grow a send buffer of a megabyte or more for it before the
server process noticed anything. Then this process publishes ``{"n", "t",
"pad"}`` (``--size`` characters of padding) ``--rate`` times a second for
``--duration`` seconds, and measures:

- the readers' latency from the publish call to the receipt (p50, p99,
  max) and whether each reader got every publication;
- the server's RSS, sampled from ``/proc`` four times a second while
  publishing, and its CPU time;
- for each slow client: the bytes in the kernel's queues for it when
  publishing is over, then, reading again, what it receives (bytes, the
  close code, whether it caught up, gaps, ``lost`` frames); and from the
  server's log, the catch-ups and closes of the stream queues and the
  layer's drops for full channels.

The stream queue (``--max-queued``), the layer's channel capacity
(``--capacity``) and the stream history (``--history``) default to 50
publications, 5 s at the default rate, a third of the stall: so a server
that keeps everything it cannot send shows it three times over, and what a
slow client receives once it reads again, up to the first sign of loss,
is what the server held for it (``--linger`` stalls the slow clients
longer, to see when the server lets them go).

Runs with slow clients are judged against the baseline run of the same
server and path (``benchmarks.stress.slow_clients.report`` says how); the command
exits with status 1 if any run fails, 2 if a server failed.

Run: python -m benchmarks.stress.slow_clients [--readers 1000] [--slow 1,10]
[--duration 15] [--rate 10] [--size 16384] [--servers uvicorn,daphne]
[--paths stream-catch_up,stream-close,group]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.servers import Server
from benchmarks.stress.slow_clients.clients import (
    STREAM,
    Broadcast,
    Reader,
    SlowClient,
    abort,
    busy_seconds,
)
from benchmarks.stress.slow_clients.report import (
    CaseResult,
    Limits,
    allowance,
    judge,
    parse_log,
    table,
)

APP = "benchmarks.stress.slow_clients.app:application"
SETTINGS = "benchmarks.stress.slow_clients.settings"
ROUTES = {"stream": "/ws/streams/", "group": "/ws/group/"}
GROUP = "bench"
PATHS = ("stream-catch_up", "stream-close", "group")
# The failures that other work on the machine can cause (see run()).
_NOISY = ("Readers' p99", "Peak RSS", "RSS still rising")

logger = logging.getLogger("benchmarks.stress.slow_clients")


@dataclass(frozen=True)
class Options:
    """One run's parameters (the command's options)."""

    readers: int = 1000
    slow: tuple[int, ...] = (1, 10)
    duration: float = 15.0
    rate: float = 10.0
    size: int = 16 * 1024
    servers: tuple[str, ...] = ("uvicorn", "daphne")
    paths: tuple[str, ...] = PATHS
    max_queued: int = 50
    max_queued_bytes: int = 4 * 1024 * 1024
    capacity: int = 50
    history: int = 50
    expiry: float = 60.0
    linger: float = 0.0
    retries: int = 1
    rcvbuf: int = 4096
    mss: int = 1448
    drain_timeout: float = 10.0
    quiet: float = 2.0
    connect_concurrency: int = 100
    redis_url: str = "redis://127.0.0.1:6379"
    logs: Path | None = None
    pin: bool = True
    limits: Limits = field(default_factory=Limits)
    smoke: bool = False

    @property
    def count(self) -> int:
        """Return how many publications a run makes."""
        return max(1, round(self.rate * self.duration))


def _padding(size: int) -> str:
    return "x" * size


async def _publisher(
    path: str, prefix: str, options: Options
) -> tuple[
    Callable[[dict[str, Any]], Awaitable[object]], Callable[[], Awaitable[None]]
]:
    """Return (publish, close) for ``path``, on the run's Redis prefix."""
    if path == "stream":
        from django_realtime.streams.positions import encode_data
        from django_realtime.streams.stores.base import PolicyTable
        from django_realtime.streams.stores.redis import RedisHistoryStore

        store = RedisHistoryStore(
            options.redis_url,
            prefix=prefix,
            policies=PolicyTable(
                {
                    "*": {
                        "max_count": options.history,
                        "max_bytes": None,
                        "max_age": None,
                    }
                }
            ),
        )

        async def publish_stream(data: dict[str, Any]) -> object:
            return await store.publish(STREAM, encode_data(data))

        async def close_store() -> None:
            with contextlib.suppress(Exception):
                await store.flush()
            await store.close()

        return publish_stream, close_store

    from django_realtime.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer([options.redis_url], prefix=f"{prefix}-layer")

    async def publish_group(data: dict[str, Any]) -> object:
        await layer.group_send(GROUP, {"type": "bench.message", "data": data})
        return None

    async def close_layer() -> None:
        with contextlib.suppress(Exception):
            await layer.flush()
        await layer.close()

    return publish_group, close_layer


async def _publish(
    publish: Callable[[dict[str, Any]], Awaitable[object]],
    options: Options,
    broadcast: Broadcast,
) -> tuple[float, int]:
    """Publish ``options.count`` messages at ``options.rate``; return (s, late)."""
    loop = asyncio.get_running_loop()
    interval = 1 / options.rate
    pad = _padding(options.size)
    late = 0
    start = loop.time()
    for n in range(options.count):
        published = await publish({"n": n, "t": time.monotonic(), "pad": pad})
        broadcast.final = getattr(published, "offset", n)
        delay = start + (n + 1) * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing, not waiting for an event
        elif delay < -interval:
            late += 1
    return loop.time() - start, late


async def _sample_rss(
    server: Server, samples: list[tuple[float, int]], every: float = 0.25
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        server.check_alive()
        samples.append((loop.time() - start, server.rss_kib()))
        await asyncio.sleep(every)  # a periodic sample, not waiting for an event


async def _open_all(clients: list[Reader], url: str, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(reader: Reader) -> None:
        async with gate:
            await reader.open(url)

    await asyncio.gather(*(one(reader) for reader in clients))


async def run_case(
    server_name: str,
    path: str,
    policy: str | None,
    slow: int,
    options: Options,
    logs: Path,
) -> CaseResult:
    """Run one server with readers and ``slow`` non-reading clients; measure."""
    prefix = f"bsc{uuid.uuid4().hex[:10]}"
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "BENCH_SLOW_REDIS": options.redis_url,
        "BENCH_SLOW_PREFIX": prefix,
        "BENCH_SLOW_HISTORY": str(options.history),
        "BENCH_SLOW_CAPACITY": str(options.capacity),
        "BENCH_SLOW_EXPIRY": str(options.expiry),
        "BENCH_SLOW_MAX_QUEUED": str(options.max_queued),
        "BENCH_SLOW_MAX_QUEUED_BYTES": str(options.max_queued_bytes),
        "BENCH_SLOW_POLICY": policy or "catch_up",
    }
    result = CaseResult(server_name, path, policy, slow, options.readers)
    log_path = logs / f"{server_name}-{path}-{policy or 'group'}-{slow}.log"
    cpu = 0 if options.pin and (os.cpu_count() or 1) >= 2 else None
    server = await asyncio.to_thread(Server, server_name, APP, env, cpu, log_path)
    broadcast = Broadcast(path, options.count, options.readers)
    readers = [Reader(broadcast) for _ in range(options.readers)]
    slow_clients = [SlowClient(broadcast) for _ in range(slow)]
    publish, close_publisher = await _publisher(path, prefix, options)
    sampler: asyncio.Task[None] | None = None
    url = server.url(ROUTES[path])
    try:
        await _open_all(readers, url, options.connect_concurrency)
        for client in slow_clients:
            await client.open(url, server.port, options.rcvbuf, options.mss)
        await asyncio.sleep(1.0)  # let the connects' garbage settle
        cpu_before = server.cpu_seconds()
        own_before, busy_before = time.process_time(), busy_seconds()
        sampler = asyncio.create_task(_sample_rss(server, result.rss))
        result.publish_seconds, result.late = await _publish(
            publish, options, broadcast
        )
        result.published = options.count
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(options.drain_timeout):
                await broadcast.all_done.wait()
        result.cpu_seconds = server.cpu_seconds() - cpu_before
        # What neither the server nor this process used: other work on the
        # machine (Redis included), which makes latencies move.
        result.other_cpu_seconds = max(
            0.0,
            busy_seconds()
            - busy_before
            - result.cpu_seconds
            - (time.process_time() - own_before),
        )
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        if options.linger:
            await asyncio.sleep(options.linger)  # the stall goes on, on purpose
        result.rss_after = server.rss_kib()
        for client in slow_clients:
            client.note_kernel(server.port)
        await asyncio.gather(
            *(c.drain(options.drain_timeout, options.quiet) for c in slow_clients)
        )
        server.check_alive()
    finally:
        if sampler is not None:
            sampler.cancel()
        for reader in readers:
            abort(reader.ws)
            if reader.task is not None:
                reader.task.cancel()
        await asyncio.gather(
            *(r.task for r in readers if r.task is not None), return_exceptions=True
        )
        for client in slow_clients:
            abort(client.ws)
        server.kill()
        await close_publisher()
    result.latencies = sorted(broadcast.latencies)
    result.frame_bytes = broadcast.frame_bytes
    result.expected = options.count * options.readers
    result.delivered = sum(reader.received for reader in readers)
    result.incomplete_readers = sum(
        reader.received < options.count for reader in readers
    )
    result.slow_clients = [client.outcome for client in slow_clients]
    result.log = parse_log(server.output)
    return result


def cases(options: Options) -> list[tuple[str, str, str | None, int]]:
    """Return the runs, each baseline (no slow client) before its runs."""
    planned: list[tuple[str, str, str | None, int]] = []
    for server in options.servers:
        stream_policies = [
            path.split("-", 1)[1] for path in options.paths if path.startswith("stream")
        ]
        if stream_policies:
            planned.append((server, "stream", None, 0))
            planned += [
                (server, "stream", policy, slow)
                for policy in stream_policies
                for slow in options.slow
            ]
        if "group" in options.paths:
            planned.append((server, "group", None, 0))
            planned += [(server, "group", None, slow) for slow in options.slow]
    return planned


@dataclass
class Outcome:
    """Every run's results, judged, and where the server logs are."""

    results: list[CaseResult]
    baselines: dict[tuple[str, str], CaseResult]
    logs: Path
    machine: str = ""

    @property
    def failures(self) -> list[str]:
        return [
            f"{r.server} {r.label} with {r.slow} slow: {failure}"
            for r in self.results
            for failure in r.failures
        ]


async def run(options: Options) -> Outcome:
    """Run every case in turn; judge each against its baseline."""
    logs = options.logs or Path(tempfile.mkdtemp(prefix="slow_client-"))
    logs.mkdir(parents=True, exist_ok=True)
    load = " ".join(f"{n:.2f}" for n in os.getloadavg())
    machine = (
        f"{time.strftime('%Y-%m-%d %H:%M')}  Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load at the start {load}"
    )
    outcome = Outcome([], {}, logs, machine)
    for server, path, policy, slow in cases(options):
        for attempt in range(options.retries + 1):
            result = await run_case(server, path, policy, slow, options, logs)
            result.attempt = attempt + 1
            if not slow:
                outcome.baselines[server, path] = result
            per_slow_client = allowance(
                path,
                result.frame_bytes,
                options.max_queued,
                options.max_queued_bytes,
                options.capacity,
            )
            baseline = outcome.baselines.get((server, path))
            judge(result, baseline, options.limits, per_slow_client)
            # Other work on the machine can stall this process for a second:
            # a latency failure counts only if it happens again. So does an
            # RSS failure: the readers fall behind then, and daphne keeps up
            # to its write buffer (64 KiB and a frame) for each of them,
            # tens of MiB over 1,000 readers.
            noisy = any(f.startswith(_NOISY) for f in result.failures)
            if not noisy or attempt == options.retries:
                break
            logger.info("Over a latency or RSS limit: running it again.")
        outcome.results.append(result)
        logger.info(
            "%s %s, %d slow: p99 %.1f ms, peak RSS %.1f MiB",
            server,
            result.label,
            slow,
            (result.p99 or 0) * 1000,
            result.peak_kib / 1024,
        )
    load = " ".join(f"{n:.2f}" for n in os.getloadavg())
    outcome.machine += f"; load at the end {load}"
    return outcome


def report(outcome: Outcome, options: Options) -> str:
    """Return the run's settings, tables and verdicts as text."""
    limits = options.limits
    lines = [
        outcome.machine,
        f"{options.readers} readers; slow clients {', '.join(map(str, options.slow))} "
        f"(rcvbuf {options.rcvbuf} B, MSS {options.mss} B); {options.duration:g} s at "
        f"{options.rate:g} msgs/s, {options.size:,} B padding; stream queue "
        f"{options.max_queued} publications, history {options.history}, layer "
        f"capacity {options.capacity}, expiry {options.expiry:g} s; linger "
        f"{options.linger:g} s",
        "",
        table(outcome.results, outcome.baselines),
        "",
        f"Limits: p99 <= max({limits.latency_factor:g} x baseline, baseline + "
        f"{limits.latency_floor_ms:g} ms); peak RSS <= baseline peak + slow x "
        f"allowance + {limits.rss_slack_mib:g} MiB; rise over the second half <= "
        f"max({limits.rising_floor_mib:g} MiB, {limits.rising_share:g} x what was "
        "published to the slow clients meanwhile); every reader gets everything.",
    ]
    for result in outcome.results:
        for sample in result.log.samples:
            lines.append(f"  {result.server} {result.label} log: {sample}")
    failures = outcome.failures
    lines.append("")
    lines += [f"FAIL  {failure}" for failure in failures] or ["PASS"]
    return "\n".join(lines)
