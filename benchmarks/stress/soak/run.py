"""Soak: thousands of connections coming and going, cycle after cycle; nothing may leak.

For each channel layer (the in-memory layer, then the Redis layer), a fresh
server process (uvicorn, or daphne with ``--server daphne``) serves
``benchmarks.stress.soak.app``, whose consumer joins one of ``--rooms``
groups on connect and leaves it on disconnect, and this process runs the
clients (:mod:`example_project.c10k.client`):

1. warm-up: ``--warmup`` connections (as many as ``--connections`` by
   default) open, churn as below for one ``--period``, and all close, so
   that what the server keeps for reuse (pooled connections, caches, the
   allocator's pools) has the size the cycles need; once the server's file
   descriptors are back, the **baseline** is taken;
2. ramp: ``--connections`` connections open, ``--concurrency`` handshakes
   at a time;
3. churn, for ``--duration`` seconds: ``--churn`` connections close and as
   many open every ``--period`` seconds, spread evenly, members chosen at
   random; ``--abort-fraction`` of the closes drop the TCP connection
   without a closing handshake. Meanwhile a probe every
   ``--probe-interval`` seconds: one member sends a text frame, the server
   sends it to its room through the channel layer, and every member that
   was in the room when it left (and was not closed since) must receive it
   within ``--probe-timeout`` seconds;
4. every connection closes with a closing handshake;
5. settle: wait until the server's open file descriptors are back to the
   baseline's (at most ``--settle-timeout`` seconds), then ``--settle``
   seconds more; then the figures are taken again.

Steps 2 to 5 repeat ``--cycles`` times. The figures, from ``/proc`` and
Redis: the server's RSS and open file descriptors, the load client's open
file descriptors, the server's Redis connections (``CLIENT LIST``: each
carries a name that starts with the run's prefix) and the keys of the run's
prefix; from the application's stats endpoint, after a garbage collection:
consumers still alive, asyncio tasks, objects tracked by the collector.
:mod:`benchmarks.stress.soak.report` says how they are judged: counts back
to the baseline after every cycle, RSS at the end of the last cycle within
``--rss-growth`` of the end of cycle ``--rss-from``.

The command exits with status 1 if a check fails, 2 if a server failed or
the run took longer than its time limit. Keys of the run's prefix are
deleted from Redis at the end (never anything else).

Run: python -m benchmarks.stress.soak [--smoke] [--connections 10000]
[--churn 1000] [--period 10] [--duration 60] [--cycles 5]
[--layers memory,redis] [--server uvicorn]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measures import raise_fd_limit
from benchmarks.servers import Server, ServerError, pin, serving
from benchmarks.stress.soak.fleet import Fleet
from benchmarks.stress.soak.measure import (
    open_fds,
    redis_clients,
    scan_log,
    snapshot,
)
from benchmarks.stress.soak.report import SoakResult, report, self_check, verdicts
from example_project.c10k.client import SourceAddresses

APP = "benchmarks.stress.soak.app:application"
SETTINGS = "benchmarks.stress.soak.settings"
LAYERS = ("memory", "redis")
SERVERS = ("uvicorn", "daphne")
_TICK = 0.1

logger = logging.getLogger("benchmarks.stress.soak")


@dataclass(frozen=True)
class Options:
    """One soak's parameters (the command's options)."""

    connections: int = 10_000
    churn: int = 1_000
    period: float = 10.0
    duration: float = 60.0
    layers: tuple[str, ...] = LAYERS
    server: str = "uvicorn"
    rooms: int = 100
    warmup: int | None = None  # as many as connections
    cycles: int = 5
    concurrency: int = 100
    abort_fraction: float = 0.1
    probe_interval: float = 1.0
    probe_timeout: float = 10.0
    settle: float = 5.0
    settle_timeout: float = 60.0
    quiet: float = 15.0
    rss_from: int = 2
    rss_growth: float = 0.05
    per_host: int = 5_000
    redis_url: str = "redis://127.0.0.1:6379"
    logs: Path | None = None
    pin: bool = True
    smoke: bool = False

    @property
    def time_limit(self) -> float:
        """Return the most a run of one layer may take, in seconds."""
        cycle = self.duration + self.settle_timeout + self.settle + 180
        # The warm-up: a wave, its settle and the wait for quiet.
        warm_up = cycle + self.settle_timeout
        return warm_up + self.cycles * cycle


#: ``--smoke``: a short run of each layer, with as many connections in the
#: warm-up as in the cycles.
SMOKE = Options(
    connections=300,
    churn=150,
    period=2.0,
    duration=4.0,
    rooms=30,
    warmup=300,
    probe_interval=0.5,
    probe_timeout=5.0,
    settle=1.0,
    settle_timeout=20.0,
    smoke=True,
)


class _Redis:
    """The driver's own Redis connection, for ``CLIENT LIST`` and keys."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix

    def delete_keys(self) -> None:
        """Delete the keys of the run's prefix, and only those."""
        batch = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
        for start in range(0, len(batch), 500):
            self.client.unlink(*batch[start : start + 500])

    def close(self) -> None:
        self.client.close()


async def _settle(
    server: Server, fleet: Fleet, baseline_fds: int | None, options: Options
) -> None:
    """Wait for the server's fds to come back, then ``options.settle`` more."""
    deadline = time.monotonic() + options.settle_timeout
    while baseline_fds is not None and time.monotonic() < deadline:
        server.check_alive()
        if open_fds(server.pid) <= baseline_fds:
            break
        await asyncio.sleep(0.5)  # another process's fds cannot be awaited
    await asyncio.sleep(options.settle)  # stragglers: closes still in flight
    fleet.check_dropped()


async def _quiet(server: Server, redis: _Redis | None, options: Options) -> None:
    """Wait until the server's fds and Redis connections stop changing.

    What the server gives back once idle (the Redis layer's connections of
    a burst, closed after its ``idle_timeout``) must be gone before the
    baseline is taken: ``options.quiet`` seconds without a change, at most
    ``options.settle_timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.settle_timeout
    last: tuple[int, int] | None = None
    since = loop.time()
    while (now := loop.time()) < deadline:
        server.check_alive()
        clients = 0
        if redis is not None:
            clients = await asyncio.to_thread(redis_clients, redis.client, redis.prefix)
        figures = (open_fds(server.pid), clients)
        if figures != last:
            last, since = figures, now
        elif now - since >= options.quiet:
            return
        await asyncio.sleep(0.5)  # another process's fds cannot be awaited
    logger.warning(
        "The server's fds and Redis connections still changed after %.0f s.",
        options.settle_timeout,
    )


async def _warm_up(server: Server, fleet: Fleet, options: Options) -> None:
    """Open the warm-up's connections, churn them for a period, close them all.

    The warm-up does what a cycle does, briefly, so that what the server
    keeps for reuse (pooled connections, caches, the allocator's pools)
    exists at the baseline.
    """
    count = options.warmup or options.connections
    await fleet.grow(count)
    await _churn(server, fleet, options, min(options.duration, options.period), count)
    await fleet.close_all(options.concurrency)


async def _churn(
    server: Server, fleet: Fleet, options: Options, seconds: float, count: int
) -> None:
    """Churn ``count`` connections for ``seconds``, with probes."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    rate = options.churn / options.period
    done = 0
    next_probe = start
    next_report = start + options.period
    while (now := loop.time()) < start + seconds:
        fleet.check_dropped()
        fleet.expire_probes()
        due = int(rate * (now - start)) - done
        if due > 0:
            done += due
            fleet.close_random(due)
        missing = count - len(fleet) - fleet.in_flight
        if missing > 0:
            fleet.start_opening(missing)
        if now >= next_probe:
            next_probe += options.probe_interval
            await fleet.probe()
        if now >= next_report:
            next_report += options.period
            server.check_alive()
            stats = fleet.stats
            logger.info(
                "%3.0f s: %d open, %d opened, %d closed, %d aborted, "
                "%d failures, RSS %.1f MiB",
                now - start,
                len(fleet),
                stats.opened,
                stats.closed,
                stats.aborted,
                stats.failures,
                server.rss_kib() / 1024,
            )
        await asyncio.sleep(_TICK)
    await fleet.wait_background()
    await fleet.settle_probes()


async def _sample_peak(server: Server, result: SoakResult) -> None:
    while True:
        with contextlib.suppress(OSError, ServerError):
            result.peak_rss_kib = max(result.peak_rss_kib, server.rss_kib())
        await asyncio.sleep(1.0)


async def _soak(
    server: Server, layer: str, redis: _Redis | None, options: Options
) -> SoakResult:
    prefix = redis.prefix if redis is not None else ""
    client = redis.client if redis is not None else None
    fleet = Fleet(
        f"ws://127.0.0.1:{server.port}",
        rooms=options.rooms,
        concurrency=options.concurrency,
        abort_fraction=options.abort_fraction,
        probe_timeout=options.probe_timeout,
        sources=SourceAddresses(per_host=options.per_host),
    )
    warmup = options.warmup or options.connections
    logger.info("%s, %s layer: warm-up with %d", server.name, layer, warmup)
    await _warm_up(server, fleet, options)
    await _settle(server, fleet, None, options)
    await _quiet(server, redis, options)
    result = SoakResult(
        server.name, layer, await asyncio.to_thread(snapshot, server, client, prefix)
    )
    result.fleet = fleet.stats
    sampler = asyncio.ensure_future(_sample_peak(server, result))
    try:
        for cycle in range(1, options.cycles + 1):
            logger.info("cycle %d: ramp to %d", cycle, options.connections)
            started = time.monotonic()
            await fleet.grow(options.connections)
            result.ramp_seconds.append(time.monotonic() - started)
            logger.info(
                "cycle %d: %d open in %.1f s; churn for %.0f s",
                cycle,
                len(fleet),
                result.ramp_seconds[-1],
                options.duration,
            )
            await _churn(server, fleet, options, options.duration, options.connections)
            result.peaks.append(
                await asyncio.to_thread(
                    snapshot, server, client, prefix, with_app=False
                )
            )
            logger.info("cycle %d: closing %d", cycle, len(fleet))
            await fleet.close_all(options.concurrency)
            await _settle(server, fleet, result.baseline.server_fds, options)
            result.afters.append(
                await asyncio.to_thread(snapshot, server, client, prefix)
            )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    result.log = scan_log(server.output)
    result.checks = verdicts(result, options.rss_from, options.rss_growth)
    return result


async def run_layer(layer: str, options: Options, logs: Path) -> SoakResult:
    """Soak one layer on a fresh server; raise ``ServerError`` if it fails."""
    prefix = f"bench-soak-{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "BENCH_SOAK_LAYER": layer,
        "BENCH_SOAK_REDIS": options.redis_url,
        "BENCH_SOAK_PREFIX": prefix,
    }
    redis = _Redis(options.redis_url, prefix) if layer == "redis" else None
    cpu = 0 if options.pin and (os.cpu_count() or 1) >= 2 else None
    log_path = logs / f"{options.server}-{layer}.log"
    try:
        with serving(options.server, APP, env, cpu, log_path) as server:
            try:
                async with asyncio.timeout(options.time_limit):
                    return await _soak(server, layer, redis, options)
            except TimeoutError:
                raise ServerError(
                    f"The {layer} run took longer than {options.time_limit:.0f} s."
                ) from None
    finally:
        if redis is not None:
            redis.delete_keys()
            redis.close()


async def run(options: Options, logs: Path) -> list[SoakResult]:
    """Soak every layer of ``options`` in turn; server logs go to ``logs``."""
    raise_fd_limit()
    return [await run_layer(layer, options, logs) for layer in options.layers]


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"Expected a positive number, got {text}.")
    return value


def parse_args(argv: list[str] | None) -> Options:
    """Return the soak's options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stress.soak",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    defaults = Options()
    add = parser.add_argument
    add("--connections", type=int, default=defaults.connections)
    add("--churn", type=int, default=defaults.churn, help="closes and opens a period")
    add("--period", type=_positive, default=defaults.period, help="seconds")
    add("--duration", type=_positive, default=defaults.duration, help="seconds")
    add("--layers", default=",".join(defaults.layers), help="memory,redis")
    add("--server", choices=SERVERS, default=defaults.server)
    add("--rooms", type=int, default=defaults.rooms)
    add("--warmup", type=int, default=None, help="connections (--connections)")
    add("--cycles", type=int, default=defaults.cycles)
    add("--concurrency", type=int, default=defaults.concurrency)
    add("--abort-fraction", type=float, default=defaults.abort_fraction)
    add("--probe-interval", type=_positive, default=defaults.probe_interval)
    add("--probe-timeout", type=_positive, default=defaults.probe_timeout)
    add("--settle", type=float, default=defaults.settle, help="seconds")
    add("--settle-timeout", type=float, default=defaults.settle_timeout)
    add(
        "--quiet",
        type=float,
        default=defaults.quiet,
        help="seconds without a change in the server's fds and Redis "
        "connections before the baseline is taken",
    )
    add(
        "--rss-from",
        type=int,
        default=defaults.rss_from,
        help="the cycle whose end the last cycle's RSS is compared with",
    )
    add(
        "--rss-growth",
        type=float,
        default=defaults.rss_growth,
        help="how much more RSS the last cycle may end with (0.05: 5%%)",
    )
    add(
        "--smoke",
        action="store_true",
        help="check the verdict on planted leaks, then a short run of both "
        "layers (300 connections, 5 cycles of 4 s)",
    )
    add("--per-host", type=int, default=defaults.per_host, help="per source address")
    add("--redis-url", default=defaults.redis_url)
    add("--logs", type=Path, default=None, help="keep server logs here")
    add("--no-pin", action="store_true", help="do not pin server and client")
    args = parser.parse_args(argv)
    layers = tuple(name for name in args.layers.split(",") if name)
    for name in layers:
        if name not in LAYERS:
            parser.error(f"Expected layers among {','.join(LAYERS)}, got {name!r}.")
    if min(args.connections, args.rooms, args.cycles, args.concurrency) < 1:
        parser.error("--connections, --rooms, --cycles, --concurrency must be >= 1.")
    warmup_ok = args.warmup is None or args.warmup >= 1
    if args.churn < 0 or not warmup_ok or not 0 <= args.abort_fraction <= 1:
        parser.error(
            "Expected --churn >= 0, --warmup >= 1, 0 <= --abort-fraction <= 1."
        )
    if args.smoke:
        return dataclasses.replace(
            SMOKE,
            layers=layers,
            server=args.server,
            redis_url=args.redis_url,
            logs=args.logs,
            pin=not args.no_pin,
        )
    return Options(
        connections=args.connections,
        churn=args.churn,
        period=args.period,
        duration=args.duration,
        layers=layers,
        server=args.server,
        rooms=args.rooms,
        warmup=args.warmup,
        cycles=args.cycles,
        concurrency=args.concurrency,
        abort_fraction=args.abort_fraction,
        probe_interval=args.probe_interval,
        probe_timeout=args.probe_timeout,
        settle=args.settle,
        settle_timeout=args.settle_timeout,
        quiet=args.quiet,
        rss_from=args.rss_from,
        rss_growth=args.rss_growth,
        per_host=args.per_host,
        redis_url=args.redis_url,
        logs=args.logs,
        pin=not args.no_pin,
    )


def main(argv: list[str] | None = None) -> int:
    """Soak every layer, print the reports; return 1 if a check failed."""
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if options.smoke and (problems := self_check()):
        print("The verdict's self-check failed:", *problems, sep="\n- ")
        return 1
    if options.pin and (os.cpu_count() or 1) >= 2:
        pin(1)  # the server runs on core 0
    logs = options.logs or Path(tempfile.mkdtemp(prefix="soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(run(options, logs))
    except ServerError as error:
        print(f"A server failed: {error}\nServer logs: {logs}", file=sys.stderr)
        return 2
    print("\n\n".join(report(result, options) for result in results))
    ok = all(result.ok for result in results)
    if ok and options.logs is None:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        print(f"Server logs: {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
