"""Benchmark django_realtime against Channels and a raw ASGI floor, on real servers.

For each ASGI server (uvicorn, daphne) the same measurements run against
three applications: a framework-free ASGI app (the floor), django_realtime
(``benchmarks.realtime_app``) and Channels (``benchmarks.channels_app``).
Every measurement gets a fresh server process, pinned to one core; the load
client runs on the other cores: this process for handshakes, load workers
(:mod:`benchmarks.worker`) for echo and fan-out. The table gives the
client's CPU beside every rate, so that a saturated client shows. Loopback
only; every count and wait is bounded, and every server is killed at the
end, even on failure.

The transports group (``--only transports``, :mod:`benchmarks.transports`)
serves one stream over WebSocket, SSE and long-polling from one app. The
layers step (``--only layers``, :mod:`benchmarks.layers`) runs no server:
it measures every channel layer between two processes, in a table of its
own.

Run: python -m benchmarks [--quick | --smoke] [--servers uvicorn] [--only echo,fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import layers, measures, multiplex, report, servers
from benchmarks.steps import APPS, LAYERS, REDIS_LAYERS, STEPS, Run

SERVERS = ("uvicorn", "daphne")
# The server steps, then the layers step (no server: benchmarks.layers), then
# the multiplexing step (a server of its own: benchmarks.multiplex).
SUITE_STEPS = (*STEPS, "layers", "multiplex")


def _redis_answers(url: str) -> bool:
    host_port = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection(
            (host or "127.0.0.1", int(port or 6379)), timeout=2
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _parse_list(value: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"Expected some of {list(allowed)}, got {unknown}."
        )
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Return the suite's options; ``--smoke`` implies a quick run on uvicorn."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="about a minute per server")
    add(
        "--smoke",
        action="store_true",
        help="check the suite itself: its report on planted figures, then a "
        "quick run on uvicorn and the memory layer that must give every figure",
    )
    add("--servers", default=",".join(SERVERS), help="uvicorn,daphne")
    add("--apps", default=",".join(APPS), help="raw,ours,channels")
    add("--only", default=",".join(SUITE_STEPS), help=",".join(SUITE_STEPS))
    add(
        "--layers",
        default="memory,channels-redis,realtime-redis",
        help=",".join(LAYERS),
    )
    add(
        "--channel-layers",
        default=",".join(layers.LAYERS),
        help="the layers step's layers: " + ",".join(layers.LAYERS),
    )
    add("--held", type=int, default=None, help="connections to hold (10000)")
    add("--members", type=int, default=None, help="fan-out group size (1000)")
    add("--joins", type=int, default=None, help="clients joining at once (1000)")
    add("--echo-seconds", type=float, default=None)
    add(
        "--echo-layer",
        choices=("default", "none"),
        default="default",
        help="whether echo consumers take the channel layer (default) or none "
        "(channel_layer_alias = None, both frameworks)",
    )
    add("--server-cpu", type=int, default=0, help="the core the server runs on")
    add(
        "--client-processes",
        type=int,
        default=None,
        help="load workers for echo and fan-out (one per client core)",
    )
    add("--redis-url", default="redis://127.0.0.1:6379")
    add("--deadline", type=float, default=900.0, help="seconds for the whole run")
    add("--logs", type=Path, default=None, help="keep server logs here")
    add(
        "--profile",
        type=Path,
        default=None,
        help="record each server with py-spy (collapsed stacks) into this "
        "directory; summarise with python -m benchmarks.profile_summary",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.quick = True
        args.servers = "uvicorn"
        args.layers = "memory"
    try:
        args.servers = _parse_list(args.servers, SERVERS)
        args.apps = _parse_list(args.apps, list(APPS))
        args.only = _parse_list(args.only, SUITE_STEPS)
        args.layers = _parse_list(args.layers, list(LAYERS))
        args.channel_layers = _parse_list(args.channel_layers, list(layers.LAYERS))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    return args


def header(run: Run) -> str:
    """Return the lines above the table: command, machine, versions, sizes."""
    versions = []
    for module in ("django", "channels", "channels_redis", "uvicorn", "daphne"):
        try:
            version = getattr(__import__(module), "__version__", "?")
        except ImportError:
            version = "missing"
        versions.append(f"{module} {version}")
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    load = " ".join(f"{figure:.2f}" for figure in os.getloadavg())
    args, sizes = run.args, run.sizes
    placement = (
        f"server on core {args.server_cpu}, client on {sorted(run.client_cpus)} "
        f"({run.processes} load worker(s))"
        if run.client_cpus
        else "not pinned (needs two usable cores)"
    )
    machine = f"Python {platform.python_version()}, {os.cpu_count()} cores"
    return "\n".join(
        [
            f"$ {command}",
            f"{time.strftime('%Y-%m-%d %H:%M')}  {machine}, load {load}; {placement}",
            "  ".join(versions),
            f"echo: {sizes.echo_connections} connections x {sizes.echo_size} B "
            f"for {sizes.echo_seconds:g} s, echo consumers' layer: "
            f"{args.echo_layer}; held: {sizes.held:,}; fan-out: "
            f"{sizes.members:,} members, {sizes.paced_rate:g}/s for "
            f"{sizes.paced_seconds:g} s, burst of {sizes.burst}; "
            f"joins: {sizes.joins:,}",
        ]
    )


def render(run: Run) -> str:
    """Return the header, the table, the targets and the notes."""
    columns = [
        (server, app)
        for server in run.args.servers
        for app in run.args.apps
        if (server, app) in run.results
    ]
    layout = report.rows(run.held_points, run.rss_at, run.layers, run.sizes.joins)
    parts = [header(run), "", report.table(run.results, columns, layout), ""]
    targets = report.target_lines(
        run.results, run.args.servers, run.held_points, run.layers
    )
    if targets:
        parts += ["Targets:", *targets, ""]
    if run.notes:
        parts += ["Notes:", *(f"- {note}" for note in run.notes), ""]
    return "\n".join(parts)


def _layers(args: argparse.Namespace, notes: list[str]) -> list[str]:
    layers: list[str] = args.layers
    if any(layer in REDIS_LAYERS for layer in layers) and not _redis_answers(
        args.redis_url
    ):
        notes.append(
            f"Redis does not answer at {args.redis_url}: Redis layers skipped."
        )
        layers = [layer for layer in layers if layer not in REDIS_LAYERS]
    return layers


def _layer_sizes(args: argparse.Namespace) -> layers.Sizes:
    sizes = layers.SMOKE if args.smoke else layers.QUICK if args.quick else None
    sizes = sizes or layers.Sizes()
    if args.members is not None:
        sizes = replace(sizes, members=args.members)
    return sizes


def smoke_problems(run: Run, on_servers: bool = True) -> list[str]:
    """Return what a smoke run must not show: gaps in the table, live servers."""
    problems = [
        f"{server} {app}: {key} failed"
        for (server, app), values in run.results.items()
        for key, value in values.items()
        if value is None
    ]
    if servers.running():
        problems.append(f"servers still running: {servers.running()}")
    expected = {(s, a) for s in run.args.servers for a in run.args.apps}
    expected = expected if on_servers else set()
    problems += [f"{s} {a}: not measured" for s, a in expected - run.results.keys()]
    return problems


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table and the targets; return the exit status.

    The status is 1 if a measurement failed (or, with ``--smoke``, if the
    suite's own checks failed), 0 otherwise: a missed target is a finding,
    not a failure of the run.
    """
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.smoke:
        problems = report.self_check()
        if problems:
            print("The report's self-check failed:", *problems, sep="\n- ")
            return 1
    notes: list[str] = []
    run = Run(args, _layers(args, notes))
    run.notes += notes
    measures.raise_fd_limit()
    on_servers = any(step in STEPS for step in args.only)
    try:
        if on_servers:
            run.set_up_databases()
            asyncio.run(run.run())
    finally:
        servers.kill_all()
        if on_servers:
            print(render(run), flush=True)
        else:  # the command, the machine (no server to place), the versions
            command, machine, versions = header(run).splitlines()[:3]
            print(command, machine.split("; ")[0], versions, sep="\n")
        run.cleanup()
    layer_run = None
    if "layers" in args.only:
        layer_run = asyncio.run(
            layers.measure_all(
                args.channel_layers,
                _layer_sizes(args),
                deadline=run.deadline,
                say=run.say,
            )
        )
        print(layers.render(layer_run), flush=True)
    if "multiplex" in args.only:
        size = ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
        multiplex.main(size)
    if args.smoke:
        problems = smoke_problems(run, on_servers)
        problems += layers.problems(layer_run) if layer_run else []
        print("\n".join(f"SMOKE FAIL  {p}" for p in problems) or "SMOKE PASS")
        return 1 if problems else 0
    missing = any(
        value is None for values in run.results.values() for value in values.values()
    )
    return 1 if missing or (layer_run and layer_run.failed) else 0


if __name__ == "__main__":
    sys.exit(main())
