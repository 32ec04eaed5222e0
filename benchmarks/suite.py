"""Benchmark django_realtime against Channels and a raw ASGI floor, on real servers.

For each ASGI server (uvicorn, daphne) the same measurements run against
three applications: a framework-free ASGI app (the floor), django_realtime
(``benchmarks.realtime_app``) and Channels (``benchmarks.channels_app``).
Every measurement gets a fresh server process, pinned to one core; this
process is the load client, pinned to another. Loopback only; every count
and wait is bounded, and every server is killed at the end, even on failure.

Run: python -m benchmarks [--quick] [--servers uvicorn] [--only echo,fanout]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _load, _report
from benchmarks.servers import ROOT, Server, kill_all, pin, serving
from example_project.c10k.client import SourceAddresses

STEPS = ("echo", "held", "auth", "fanout", "joins")
SERVERS = ("uvicorn", "daphne")


@dataclass(frozen=True)
class App:
    key: str
    asgi: str
    settings: str | None


APPS = {
    "raw": App("raw", "benchmarks.raw_app:application", None),
    "ours": App(
        "ours", "benchmarks.realtime_app:application", "benchmarks.realtime_settings"
    ),
    "channels": App(
        "channels",
        "benchmarks.channels_app:application",
        "benchmarks.channels_settings",
    ),
}

LayerConfig = Callable[[str, str], dict[str, Any]]


def _channels_redis(redis_url: str, prefix: str) -> dict[str, Any]:
    # channels-redis as its documentation shows it: hosts only (a unique
    # prefix keeps concurrent runs apart and changes nothing else).
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [redis_url], "prefix": prefix},
    }


# The layer columns: for each layer, the CHANNEL_LAYERS["default"] of each app
# that runs on it (an app absent from a layer does not run on it; {} means
# "no layer", the raw floor's in-process fan-out). One line adds a layer.
LAYERS: dict[str, dict[str, LayerConfig]] = {
    "memory": {
        "raw": lambda url, prefix: {},
        "ours": lambda url, prefix: {
            "BACKEND": "django_realtime.layers.InMemoryChannelLayer"
        },
        "channels": lambda url, prefix: {
            "BACKEND": "channels.layers.InMemoryChannelLayer"
        },
    },
    "channels-redis": {"ours": _channels_redis, "channels": _channels_redis},
    "realtime-redis": {
        "ours": lambda url, prefix: {
            "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": prefix},
        },
    },
}
REDIS_LAYERS = {"channels-redis", "realtime-redis"}


@dataclass(frozen=True)
class Sizes:
    """Counts and durations of one run (full or --quick)."""

    echo_connections: int = 50
    echo_size: int = 64
    echo_seconds: float = 5.0
    echo_warmup: float = 1.0
    held: int = 10_000
    held_concurrency: int = 50
    settle: float = 2.0
    auth_concurrency: int = 10
    auth_seconds: float = 3.0
    members: int = 1_000
    paced_rate: float = 20.0
    paced_seconds: float = 3.0
    burst: int = 50
    drain_timeout: float = 60.0
    joins: int = 1_000


QUICK = Sizes(
    echo_seconds=1.0,
    echo_warmup=0.3,
    held=600,
    settle=0.5,
    auth_seconds=1.0,
    members=100,
    paced_seconds=1.0,
    drain_timeout=10.0,
    joins=100,
)


def held_points(held: int) -> list[int]:
    """Return the held counts the handshake rate is reported at."""
    if held < 5_000:
        return [held // 2, held]
    return [point for point in (5_000, 10_000) if point < held] + [held]


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


def _in_git(path: str) -> bool:
    result = subprocess.run(
        ["git", "ls-files", "--error-unmatch", path],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _parse_list(value: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"Expected some of {list(allowed)}, got {unknown}."
        )
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about a minute per server"
    )
    parser.add_argument("--servers", default=",".join(SERVERS), help="uvicorn,daphne")
    parser.add_argument("--apps", default=",".join(APPS), help="raw,ours,channels")
    parser.add_argument("--only", default=",".join(STEPS), help=",".join(STEPS))
    parser.add_argument(
        "--layers",
        default=None,
        help="fan-out and join layers; default memory,channels-redis, and "
        "realtime-redis once django_realtime/layers/redis.py is in git",
    )
    parser.add_argument(
        "--held",
        type=int,
        default=None,
        help="connections to hold (10000; 19000 nears the fd limit)",
    )
    parser.add_argument(
        "--members", type=int, default=None, help="fan-out group size (1000)"
    )
    parser.add_argument(
        "--joins", type=int, default=None, help="clients joining at once (1000)"
    )
    parser.add_argument("--echo-seconds", type=float, default=None)
    parser.add_argument(
        "--echo-layer",
        choices=("default", "none"),
        default="default",
        help="whether echo consumers take the channel layer (default) or none "
        "(channel_layer_alias = None, both frameworks)",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument(
        "--deadline", type=float, default=1800.0, help="seconds for the whole run"
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep server logs in this directory"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record each server with py-spy (collapsed stacks) into this directory; "
        "summarise with python -m benchmarks.profile_summary",
    )
    args = parser.parse_args(argv)
    try:
        args.servers = _parse_list(args.servers, SERVERS)
        args.apps = _parse_list(args.apps, list(APPS))
        args.only = _parse_list(args.only, STEPS)
        if args.layers is not None:
            args.layers = _parse_list(args.layers, list(LAYERS))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    return args


class Run:
    """One suite run: options, set-up, the results table being filled."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        sizes = QUICK if args.quick else Sizes()
        overrides = {
            "held": args.held,
            "members": args.members,
            "joins": args.joins,
            "echo_seconds": args.echo_seconds,
        }
        sizes = Sizes(
            **{
                **sizes.__dict__,
                **{k: v for k, v in overrides.items() if v is not None},
            }
        )
        self.sizes = sizes
        self.held_points = held_points(sizes.held)
        self.rss_at = min(sizes.held, 10_000)
        self.results: _report.Results = {}
        self.notes: list[str] = []
        self.deadline = time.monotonic() + args.deadline
        self.sources = SourceAddresses(per_host=5_000)
        self.workdir = Path(tempfile.mkdtemp(prefix="django_realtime-bench-"))
        self.logdir = args.logs or self.workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.cookies: dict[str, str] = {}
        self.redis = _redis_answers(args.redis_url)
        layers = args.layers
        if layers is None:
            layers = ["memory", "channels-redis"]
            if _in_git("django_realtime/layers/redis.py"):
                layers.append("realtime-redis")
        if not self.redis and any(layer in REDIS_LAYERS for layer in layers):
            self.notes.append(
                f"Redis does not answer at {args.redis_url}: Redis layers skipped."
            )
            layers = [layer for layer in layers if layer not in REDIS_LAYERS]
        self.layers = layers
        self.server_count = 0
        cores = os.sched_getaffinity(0)
        self.pin = (
            args.server_cpu != args.client_cpu
            and {args.server_cpu, args.client_cpu} <= cores
        )

    # -- set-up ----------------------------------------------------------------

    def env(self, app: App, layer: dict[str, Any] | None = None) -> dict[str, str]:
        # BENCH_RUN marks this run's servers (the smoke test looks for them).
        env = {"BENCH_ECHO_LAYER": self.args.echo_layer, "BENCH_RUN": str(self.logdir)}
        if app.settings is not None:
            env["DJANGO_SETTINGS_MODULE"] = app.settings
            env["BENCH_DB"] = str(self.workdir / f"{app.key}.sqlite3")
            if layer:
                env["BENCH_LAYER"] = json.dumps(layer)
        return env

    def set_up_databases(self) -> None:
        """Migrate each Django app's SQLite file, make the user, log in once."""
        for key in self.args.apps:
            app = APPS[key]
            if app.settings is None:
                continue
            result = subprocess.run(
                [sys.executable, "-m", "benchmarks._setup"],
                cwd=ROOT,
                env={**os.environ, **self.env(app)},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"Setting up {key} failed:\n{result.stdout}{result.stderr}"
                )
            self.cookies[key] = result.stdout.strip().splitlines()[-1]

    # -- running -------------------------------------------------------------

    def record(self, server: str, app: str, values: dict[str, float | None]) -> None:
        self.results.setdefault((server, app), {}).update(values)

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    async def measure(
        self,
        server_name: str,
        app: App,
        what: str,
        failed_keys: list[str],
        body: Callable[[Server], Awaitable[dict[str, float | None]]],
        layer: dict[str, Any] | None = None,
    ) -> None:
        """Start a fresh pinned server, run ``body`` on it, record, kill it."""
        label = f"[{server_name} {_report.APP_TITLES[app.key]}] {what}"
        if time.monotonic() > self.deadline:
            self.notes.append(f"{label}: skipped, past the --deadline.")
            return
        self.server_count += 1
        log_path = self.logdir / f"{self.server_count:02d}-{server_name}-{app.key}.log"
        self.say(f"{label} ...")
        started = time.monotonic()
        try:
            with (
                serving(
                    server_name,
                    app.asgi,
                    self.env(app, layer),
                    self.args.server_cpu if self.pin else None,
                    log_path,
                ) as server,
                self.profiling(server, log_path.stem + f"-{what}"),
            ):
                values = await body(server)
        except Exception as error:
            self.record(server_name, app.key, dict.fromkeys(failed_keys))
            self.notes.append(
                f"{label}: {type(error).__name__}: {error} (log: {log_path})"
            )
            self.say(traceback.format_exc())
            return
        self.record(server_name, app.key, values)
        shown = ", ".join(
            f"{key}={value:,.1f}" if isinstance(value, float) else f"{key}={value}"
            for key, value in values.items()
        )
        self.say(f"{label}: {shown} ({time.monotonic() - started:.0f} s)")

    @contextlib.contextmanager
    def profiling(self, server: Server, name: str) -> Iterator[None]:
        """Record ``server`` with py-spy for the block, if --profile is set."""
        if self.args.profile is None:
            yield
            return
        self.args.profile.mkdir(parents=True, exist_ok=True)
        output = self.args.profile / (re.sub(r"[^\w.-]+", "_", name) + ".txt")
        client_cpu = self.args.client_cpu if self.pin else None
        # py-spy runs on the client's core, and does not pause the server.
        spy = subprocess.Popen(
            [
                shutil.which("py-spy") or "py-spy",
                "record",
                "--pid",
                str(server.pid),
                "--format=raw",
                "--nolineno",
                "--nonblocking",
                "--rate=200",
                "--gil",  # samples of the thread running Python, not idle ones
                f"--output={output}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: pin(client_cpu),  # the suite starts no threads
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()

    def note_failures(self, label: str, failures: Any) -> None:
        if failures:
            detail = ", ".join(
                f"{name} x{count}" for name, count in failures.most_common()
            )
            self.notes.append(f"{label}: {detail}")

    async def step_echo(self, server_name: str, app: App) -> None:
        sizes = self.sizes
        # A server per kind: each profile (--profile) shows one kind alone.
        for kind in ["async"] if app.key == "raw" else ["async", "sync"]:

            async def body(server: Server, kind: str = kind) -> dict[str, float | None]:
                result = await _load.echo(
                    server,
                    f"/ws/echo/{kind}/",
                    connections=sizes.echo_connections,
                    size=sizes.echo_size,
                    duration=sizes.echo_seconds,
                    warmup=sizes.echo_warmup,
                    sources=self.sources,
                )
                label = f"[{server_name} {_report.APP_TITLES[app.key]}] echo {kind}"
                self.note_failures(label, result.failures)
                return {
                    f"echo_{kind}": result.rate,
                    f"echo_{kind}_server_cpu": result.server_cpu,
                    f"echo_{kind}_client_cpu": result.client_cpu,
                }

            await self.measure(server_name, app, f"echo {kind}", [f"echo_{kind}"], body)

    async def step_held(self, server_name: str, app: App) -> None:
        sizes = self.sizes

        async def body(server: Server) -> dict[str, float | None]:
            result = await _load.ramp(
                server,
                "/ws/echo/async/",
                targets=self.held_points,
                rss_at=self.rss_at,
                concurrency=sizes.held_concurrency,
                settle=sizes.settle,
                sources=self.sources,
            )
            self.note_failures(
                f"[{server_name} {_report.APP_TITLES[app.key]}] held", result.failures
            )
            values: dict[str, float | None] = {
                "hs_ramp": result.ramp_rate,
                "hs_ramp_server_cpu": result.ramp_server_cpu,
                "rss": result.rss_per_connection_kib,
                "held_failed": float(sum(result.failures.values())),
            }
            for point in self.held_points:
                values[f"hs_at_{point}"] = result.rates.get(point)
            return values

        keys = ["hs_ramp", "rss", *(f"hs_at_{p}" for p in self.held_points)]
        await self.measure(server_name, app, f"hold {self.sizes.held:,}", keys, body)

    async def step_auth(self, server_name: str, app: App) -> None:
        if app.key not in self.cookies:
            return
        sizes = self.sizes

        async def body(server: Server) -> dict[str, float | None]:
            result = await _load.connect_rate(
                server,
                "/ws/auth/",
                cookie=self.cookies[app.key],
                username="bench",
                concurrency=sizes.auth_concurrency,
                duration=sizes.auth_seconds,
                warmup=min(1.0, sizes.auth_seconds / 2),
                sources=self.sources,
            )
            self.note_failures(
                f"[{server_name} {_report.APP_TITLES[app.key]}] auth", result.failures
            )
            return {
                "auth": result.rate,
                "auth_failed": float(sum(result.failures.values())),
            }

        await self.measure(
            server_name, app, "connect with session + auth", ["auth"], body
        )

    async def step_fanout(self, server_name: str, app: App, layer: str) -> None:
        config = LAYERS[layer].get(app.key)
        if config is None:
            return
        sizes = self.sizes
        prefix = f"bench-{uuid.uuid4().hex[:12]}"

        async def body(server: Server) -> dict[str, float | None]:
            run = await _load.fanout(
                server,
                members=sizes.members,
                paced_rate=sizes.paced_rate,
                paced_seconds=sizes.paced_seconds,
                burst=sizes.burst,
                size=sizes.echo_size,
                drain_timeout=sizes.drain_timeout,
                concurrency=50,
                sources=self.sources,
            )
            label = f"[{server_name} {_report.APP_TITLES[app.key]}] fan-out {layer}"
            self.note_failures(f"{label} members", run.join_failures)
            if not run.ready:
                self.notes.append(f"{label}: not every member got the warm-up message.")
            values: dict[str, float | None] = {}
            for phase, result in (("paced", run.paced), ("burst", run.burst)):
                values[f"fan_{layer}_{phase}_rate"] = result.rate
                values[f"fan_{layer}_{phase}_p50"] = result.p50_ms
                values[f"fan_{layer}_{phase}_p99"] = result.p99_ms
                values[f"fan_{layer}_{phase}_lost"] = float(result.lost)
            return values

        keys = [f"fan_{layer}_{phase}_rate" for phase in ("paced", "burst")]
        await self.measure(
            server_name,
            app,
            f"fan-out to {sizes.members:,} on {layer}",
            keys,
            body,
            config(self.args.redis_url, prefix),
        )

    async def step_joins(self, server_name: str, app: App, layer: str) -> None:
        config = LAYERS[layer].get(app.key)
        if config is None or layer not in REDIS_LAYERS:
            return
        sizes = self.sizes
        prefix = f"bench-{uuid.uuid4().hex[:12]}"

        async def body(server: Server) -> dict[str, float | None]:
            result = await _load.joins(
                server,
                clients=sizes.joins,
                size=sizes.echo_size,
                drain_timeout=min(sizes.drain_timeout, 15.0),
                sources=self.sources,
            )
            label = f"[{server_name} {_report.APP_TITLES[app.key]}] joins {layer}"
            self.note_failures(label, result.failures)
            if result.not_reached:
                self.notes.append(
                    f"{label}: {result.not_reached} accepted members did not get "
                    "the group's message"
                )
            return {f"joins_{layer}": float(result.failed + result.not_reached)}

        await self.measure(
            server_name,
            app,
            f"{sizes.joins:,} joins at once on {layer}",
            [f"joins_{layer}"],
            body,
            config(self.args.redis_url, prefix),
        )

    async def run(self) -> None:
        for server_name in self.args.servers:
            steps = [step for step in STEPS if step in self.args.only]
            for index, step in enumerate(steps):
                apps = [APPS[key] for key in self.args.apps]
                if index % 2:
                    apps.reverse()  # no app always goes first on a warm machine
                for app in apps:
                    if step == "echo":
                        await self.step_echo(server_name, app)
                    elif step == "held":
                        await self.step_held(server_name, app)
                    elif step == "auth" and app.key != "raw":
                        await self.step_auth(server_name, app)
                    elif step == "fanout":
                        for layer in self.layers:
                            await self.step_fanout(server_name, app, layer)
                    elif step == "joins":
                        for layer in self.layers:
                            await self.step_joins(server_name, app, layer)

    # -- output --------------------------------------------------------------

    def header(self) -> str:
        versions = []
        for module in (
            "django",
            "channels",
            "channels_redis",
            "uvicorn",
            "daphne",
            "websockets",
        ):
            try:
                version = getattr(__import__(module), "__version__", "?")
            except ImportError:
                version = "missing"
            versions.append(f"{module} {version}")
        command = " ".join(["python -m benchmarks", *sys.argv[1:]])
        load = " ".join(f"{figure:.2f}" for figure in os.getloadavg())
        args, sizes = self.args, self.sizes
        pin = (
            f"server on core {args.server_cpu}, client on core {args.client_cpu}"
            if self.pin
            else "not pinned (needs two distinct usable cores)"
        )
        machine = f"Python {platform.python_version()}, {os.cpu_count()} cores"
        return "\n".join(
            [
                f"$ {command}",
                f"{time.strftime('%Y-%m-%d %H:%M')}  {machine}, load {load}; {pin}",
                "  ".join(versions),
                f"echo: {sizes.echo_connections} connections x {sizes.echo_size} B "
                f"for {sizes.echo_seconds:g} s, echo consumers' layer: "
                f"{args.echo_layer}; held: {sizes.held:,}; fan-out: "
                f"{sizes.members:,} members, {sizes.paced_rate:g}/s for "
                f"{sizes.paced_seconds:g} s, burst of {sizes.burst}; "
                f"joins: {sizes.joins:,}",
            ]
        )

    def report(self) -> str:
        columns = [
            (server, app)
            for server in self.args.servers
            for app in self.args.apps
            if (server, app) in self.results
        ]
        layout = _report.rows(
            self.held_points, self.rss_at, self.layers, self.sizes.joins
        )
        parts = [self.header(), "", _report.table(self.results, columns, layout), ""]
        targets = _report.target_lines(
            self.results, self.args.servers, self.held_points, self.layers
        )
        if targets:
            parts += ["Targets (issue 4, item 5):", *targets, ""]
        if self.notes:
            parts += ["Notes:", *(f"- {note}" for note in self.notes), ""]
        return "\n".join(parts)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table and the targets; return the exit status."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    run = Run(args)
    if run.pin:
        os.sched_setaffinity(0, {args.client_cpu})
    _load.raise_fd_limit()
    try:
        run.set_up_databases()
        asyncio.run(run.run())
    finally:
        kill_all()
        print(run.report(), flush=True)
        if args.logs is None:
            failed = any(note for note in run.notes if "log:" in note)
            if failed:
                print(f"Server logs kept in {run.logdir}", flush=True)
                shutil.rmtree(run.workdir / "db", ignore_errors=True)
            else:
                shutil.rmtree(run.workdir, ignore_errors=True)
    missing = any(
        value is None for values in run.results.values() for value in values.values()
    )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
