"""One suite run: its options, its set-up, and each measurement on a fresh server.

:class:`Run` starts a server per measurement (pinned to the server's core,
through :mod:`benchmarks.servers`), hands it to a measurement of
:mod:`benchmarks.measures`, :mod:`benchmarks.groups` or
:mod:`benchmarks.transports`, records the figures in the results table and
kills the server, whatever happens."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from benchmarks import groups, measures, report, transports
from benchmarks.servers import ROOT, Server, serving
from example_project.c10k.client import SourceAddresses

STEPS = ("echo", "held", "auth", "fanout", "joins", "transports")


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
TRANSPORTS_APP = App("ours", transports.APP, transports.SETTINGS)

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
    held_seconds: float = 60.0
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
    held_seconds=20.0,
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


def _py_spy() -> str:
    """Return py-spy: beside this interpreter (a virtualenv's), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


class Run:
    """One suite run: options, set-up, the results table being filled."""

    def __init__(self, args: argparse.Namespace, layers: list[str]) -> None:
        self.args = args
        sizes = QUICK if args.quick else Sizes()
        names = {field.name for field in fields(Sizes)}
        overrides = {
            name: value
            for name, value in vars(args).items()
            if name in names and value is not None
        }
        self.sizes = replace(sizes, **overrides)
        self.held_points = held_points(self.sizes.held)
        self.rss_at = min(self.sizes.held, 10_000)
        self.layers = layers
        self.results: report.Results = {}
        self.notes: list[str] = []
        self.deadline = time.monotonic() + args.deadline
        self.sources = SourceAddresses(per_host=5_000)
        self.workdir = Path(tempfile.mkdtemp(prefix="django_realtime-bench-"))
        self.logdir = args.logs or self.workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.cookies: dict[str, str] = {}
        self.server_count = 0
        cores = os.sched_getaffinity(0)
        self.pin = args.server_cpu in cores and len(cores) >= 2
        # The client gets every core but the server's.
        self.client_cpus = cores - {args.server_cpu} if self.pin else None
        self.processes = args.client_processes or len(self.client_cpus or cores)

    # -- set-up ----------------------------------------------------------------

    def env(self, app: App, layer: dict[str, Any] | None = None) -> dict[str, str]:
        env = {"BENCH_ECHO_LAYER": self.args.echo_layer}
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

    def cleanup(self) -> None:
        """Delete the run's files; keep the server logs if a measurement failed."""
        if self.args.logs is not None:
            return
        if any("log:" in note for note in self.notes):
            print(f"Server logs kept in {self.logdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- measuring -------------------------------------------------------------

    def record(self, server: str, app: str, values: dict[str, float | None]) -> None:
        self.results.setdefault((server, app), {}).update(values)

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def label(self, server_name: str, app: App, what: str) -> str:
        return f"[{server_name} {report.APP_TITLES[app.key]}] {what}"

    def note_failures(self, label: str, failures: Counter[str]) -> None:
        if failures:
            detail = ", ".join(f"{n} x{c}" for n, c in failures.most_common())
            self.notes.append(f"{label}: {detail}")

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
        label = self.label(server_name, app, what)
        if time.monotonic() > self.deadline:
            self.notes.append(f"{label}: skipped, past the --deadline.")
            return
        self.server_count += 1
        log_path = self.logdir / f"{self.server_count:02d}-{server_name}-{app.key}.log"
        self.say(f"{label} ...")
        started = time.monotonic()
        cpu = self.args.server_cpu if self.pin else None
        try:
            with (
                serving(
                    server_name, app.asgi, self.env(app, layer), cpu, log_path
                ) as s,
                self.profiling(s, log_path.stem + f"-{what}"),
            ):
                values = await body(s)
        except Exception as error:
            self.record(server_name, app.key, dict.fromkeys(failed_keys))
            self.notes.append(
                f"{label}: {type(error).__name__}: {error} (log: {log_path})"
            )
            self.say(traceback.format_exc())
            return
        self.record(server_name, app.key, values)
        shown = ", ".join(
            f"{key}={value:,.2f}" if isinstance(value, float) else f"{key}={value}"
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
        cpus = self.client_cpus
        # py-spy runs on the client's cores, and does not pause the server.
        spy = subprocess.Popen(
            [
                _py_spy(),
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
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
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

    # -- the steps ---------------------------------------------------------------

    async def step_echo(self, server_name: str, app: App) -> None:
        sizes = self.sizes
        # A server per kind: each profile (--profile) shows one kind alone.
        for kind in ["async"] if app.key == "raw" else ["async", "sync"]:

            async def body(server: Server, kind: str = kind) -> dict[str, float | None]:
                result = await measures.echo(
                    server,
                    f"/ws/echo/{kind}/",
                    connections=sizes.echo_connections,
                    size=sizes.echo_size,
                    duration=sizes.echo_seconds,
                    warmup=sizes.echo_warmup,
                    processes=self.processes,
                    cpus=self.client_cpus,
                )
                label = self.label(server_name, app, f"echo {kind}")
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
            result = await measures.ramp(
                server,
                "/ws/echo/async/",
                targets=self.held_points,
                rss_at=self.rss_at,
                concurrency=sizes.held_concurrency,
                settle=sizes.settle,
                sources=self.sources,
                seconds=sizes.held_seconds,
            )
            label = self.label(server_name, app, "held")
            self.note_failures(label, result.failures)
            if result.held < sizes.held:
                self.notes.append(
                    f"{label}: {result.held:,} of {sizes.held:,} open after "
                    f"{sizes.held_seconds:g} s of ramping (RSS per connection "
                    f"at {result.rss_at:,})."
                )
            values: dict[str, float | None] = {
                "hs_ramp": result.ramp_rate,
                "hs_ramp_server_cpu": result.ramp_server_cpu,
                "hs_ramp_client_cpu": result.ramp_client_cpu,
                "rss": result.rss_per_connection_kib,
                "held_failed": float(sum(result.failures.values())),
            }
            # A count the ramp did not reach has no rate: "-", and a note.
            for point, rate in result.rates.items():
                values[f"hs_at_{point}"] = rate
            return values

        keys = ["hs_ramp", "rss", *(f"hs_at_{p}" for p in self.held_points)]
        await self.measure(server_name, app, f"hold {self.sizes.held:,}", keys, body)

    async def step_auth(self, server_name: str, app: App) -> None:
        if app.key not in self.cookies:
            return
        sizes = self.sizes

        async def body(server: Server) -> dict[str, float | None]:
            result = await measures.connect_rate(
                server,
                "/ws/auth/",
                cookie=self.cookies[app.key],
                username="bench",
                concurrency=sizes.auth_concurrency,
                duration=sizes.auth_seconds,
                warmup=min(1.0, sizes.auth_seconds / 2),
                sources=self.sources,
            )
            self.note_failures(self.label(server_name, app, "auth"), result.failures)
            return {
                "auth": result.rate,
                "auth_server_cpu": result.server_cpu,
                "auth_client_cpu": result.client_cpu,
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
            run = await groups.fanout(
                server,
                members=sizes.members,
                paced_rate=sizes.paced_rate,
                paced_seconds=sizes.paced_seconds,
                burst=sizes.burst,
                size=sizes.echo_size,
                drain_timeout=sizes.drain_timeout,
                processes=self.processes,
                cpus=self.client_cpus,
                sources=self.sources,
            )
            label = self.label(server_name, app, f"fan-out {layer}")
            self.note_failures(f"{label} members", run.join_failures)
            if not run.ready:
                self.notes.append(f"{label}: not every member got the warm-up message.")
            values: dict[str, float | None] = {}
            for phase, result in (("paced", run.paced), ("burst", run.burst)):
                values[f"fan_{layer}_{phase}_rate"] = result.rate
                values[f"fan_{layer}_{phase}_p50"] = result.p50_ms
                values[f"fan_{layer}_{phase}_p99"] = result.p99_ms
                values[f"fan_{layer}_{phase}_lost"] = float(result.lost)
                values[f"fan_{layer}_{phase}_server_cpu"] = result.server_cpu
                values[f"fan_{layer}_{phase}_client_cpu"] = result.client_cpu
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
            result = await groups.joins(
                server,
                clients=sizes.joins,
                size=sizes.echo_size,
                drain_timeout=min(sizes.drain_timeout, 15.0),
                sources=self.sources,
            )
            label = self.label(server_name, app, f"joins {layer}")
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
        """Run every step of ``--only`` on every server, alternating the apps."""
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
                    elif step == "transports" and app.key == "ours":
                        await transports.step(self, server_name, TRANSPORTS_APP)
