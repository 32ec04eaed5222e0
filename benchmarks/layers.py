"""Measure every channel layer the same way, across real processes.

Each layer is configured only by a ``CHANNEL_LAYERS`` entry (``BACKEND``
and ``CONFIG``, in :data:`LAYERS`) and driven by the same worker
(:mod:`benchmarks.layer_worker`): one process holds the group's members,
another sends. The in-memory layer does not cross processes, so its
members and sender share one process (marked "in-process"). Per layer:

- idle CPU: the members' process, every member waiting and nothing sent,
  over ``idle`` seconds (percent of one core);
- direct: ``direct_rate`` sends a second for ``direct_seconds`` to one of
  the members (p50/p99 from send to receipt);
- fan-out: ``members`` channels from ``new_channel()`` in one group, each
  receiving in its own task; a paced phase (``paced_rate`` group sends a
  second for ``paced_seconds``) then a burst (``burst`` group sends back to
  back). Deliveries per second run from the first send to the last
  receipt; latency is from the send to each receipt (``time.monotonic_ns``
  is one clock for every process on Linux), for a paced send from when it
  was due, so that a sender that cannot keep the pace shows; what has not
  arrived ``drain_timeout`` seconds after the last send is lost;
- echo: round trips from the sender's process to an echo channel in the
  members' process and back, one at a time (p50/p99).

A layer is skipped, with a printed line, if its module does not import or
its server does not answer. The PostgreSQL layer gets a throwaway database
(``createdb``, ``migrate`` with :mod:`benchmarks.layers_settings`,
``dropdb`` at the end); Redis keys and RabbitMQ objects use a fresh prefix
and are flushed at the end. Loopback only; every wait is bounded.

Run: python -m benchmarks.layers [--smoke] [--layers sqlite,postgres] [--members N]
     python -m benchmarks --only layers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from benchmarks.layer_processes import (
    PG_HOST,
    PG_PORT,
    SETTINGS,
    Process,
    Skipped,
    answers,
    postgres_database,
)

REDIS_URL = "redis://127.0.0.1:6379"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True)
class Sizes:
    """Counts and durations of one run."""

    members: int = 1_000
    direct_rate: float = 200.0
    direct_seconds: float = 2.0
    burst: int = 50
    paced_rate: float = 20.0
    paced_seconds: float = 3.0
    echo: int = 500
    idle: float = 5.0
    drain_timeout: float = 60.0


QUICK = Sizes(burst=20, paced_seconds=1.0, echo=200, idle=2.0, drain_timeout=30.0)
SMOKE = Sizes(
    members=20,
    direct_seconds=0.5,
    burst=5,
    paced_seconds=0.5,
    echo=20,
    idle=0.5,
    drain_timeout=10.0,
)


@dataclass
class Context:
    """What a layer's configuration is made from, for one run."""

    workdir: Path
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:10]}")


@dataclass(frozen=True)
class Layer:
    title: str
    backend: str
    config: Callable[[Context], dict[str, Any]]
    cross_process: bool = True
    service: tuple[str, int] | None = None  # (host, port) that must answer


# The columns: one line adds a layer.
LAYERS: dict[str, Layer] = {
    "memory": Layer(
        "django_realtime in-memory",
        "django_realtime.layers.memory.InMemoryChannelLayer",
        lambda ctx: {},
        cross_process=False,
    ),
    "realtime-redis": Layer(
        "django_realtime Redis",
        "django_realtime.layers.redis.RedisChannelLayer",
        lambda ctx: {"hosts": [REDIS_URL], "prefix": ctx.prefix},
        service=("127.0.0.1", 6379),
    ),
    "channels-redis": Layer(
        "channels-redis (Channels' reference)",
        "channels_redis.core.RedisChannelLayer",
        lambda ctx: {"hosts": [REDIS_URL], "prefix": ctx.prefix},
        service=("127.0.0.1", 6379),
    ),
    "sqlite": Layer(
        "django_realtime SQLite",
        "django_realtime.layers.sqlite.SQLiteChannelLayer",
        lambda ctx: {"path": str(ctx.workdir / "layer.sqlite3")},
    ),
    "postgres": Layer(
        "django_realtime PostgreSQL",
        "django_realtime.layers.postgres.PostgresChannelLayer",
        lambda ctx: {"alias": "default"},
        service=(PG_HOST, PG_PORT),
    ),
    "rabbitmq": Layer(
        "django_realtime RabbitMQ",
        "django_realtime.layers.rabbitmq.RabbitMQChannelLayer",
        lambda ctx: {"url": RABBITMQ_URL, "prefix": ctx.prefix},
        service=("127.0.0.1", 5672),
    ),
}

# The figures of one layer, in the table's order: (key, heading, unit).
COLUMNS = (
    ("idle_cpu", "idle CPU", "pct"),
    ("direct_p99", "direct p99", "ms"),
    ("burst_rate", "burst/s", "rate"),
    ("burst_p99", "burst p99", "ms"),
    ("paced_p50", "paced p50", "ms"),
    ("paced_p99", "paced p99", "ms"),
    ("lost", "lost", "count"),
    ("echo_p50", "echo p50", "ms"),
    ("echo_p99", "echo p99", "ms"),
    ("join_seconds", "joins s", "s"),
)


def _rate(count: int, first_ns: int, last_ns: int | None) -> float | None:
    if not count or last_ns is None or last_ns <= first_ns:
        return None
    return count / ((last_ns - first_ns) / 1e9)


async def publish_phase(
    members: Process,
    sender: Process,
    group: str,
    phase: str,
    count: int,
    rate: float,
    sizes: Sizes,
    channel: str = "",
) -> dict[str, Any]:
    """Publish ``count`` messages to the group (or to ``channel`` alone);
    return what the members got."""
    expected = count * (1 if channel else sizes.members)
    sending = count / rate if rate else expected / 100
    sent = await sender.ask(
        sending + sizes.drain_timeout + 60,
        "publish",
        group=group,
        phase=phase,
        count=count,
        rate=rate,
        channel=channel,
    )
    got = await members.ask(
        sizes.drain_timeout + 30,
        "collect",
        phase=phase,
        expected=expected,
        within=sizes.drain_timeout,
    )
    got["rate"] = _rate(got["count"], sent["first_ns"], got["last_ns"])
    got["behind"] = sent["behind"]
    got["lost"] = expected - got["count"]
    return got


async def measure(
    name: str, sizes: Sizes, workdir: Path, say: Callable[[str], None]
) -> dict[str, float | None]:
    """Measure one layer; return its figures (raise :class:`Skipped` or fail)."""
    layer = LAYERS[name]
    module = layer.backend.rpartition(".")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        raise Skipped(f"{module} does not import")
    if layer.service and not answers(*layer.service):
        host, port = layer.service
        raise Skipped(f"nothing answers at {host}:{port}")
    ctx = Context(workdir=workdir / name)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    entry = {"BACKEND": layer.backend, "CONFIG": layer.config(ctx)}
    with contextlib.ExitStack() as stack:
        env = {"DJANGO_SETTINGS_MODULE": SETTINGS}
        if name == "postgres":
            env = stack.enter_context(postgres_database(ctx.workdir))
        log = ctx.workdir / "workers.log"
        members = await Process.start(entry, env, log)
        sender = members
        try:
            if layer.cross_process:
                sender = await Process.start(entry, env, log)
            return await _measure(members, sender, sizes, say, name)
        finally:
            if sender is not members:
                await sender.stop(flush=True)
            await members.stop(flush=not layer.cross_process)
    raise AssertionError("unreachable")  # for mypy: ExitStack may swallow


async def _measure(
    members: Process,
    sender: Process,
    sizes: Sizes,
    say: Callable[[str], None],
    name: str,
) -> dict[str, float | None]:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    joined = await members.ask(
        60 + sizes.members / 10, "members", group=group, count=sizes.members
    )
    echo_channel = (await members.ask(30, "echo_server"))["channel"]
    await asyncio.sleep(0.5)  # let every receive start waiting
    idle = await members.ask(sizes.idle + 30, "idle", seconds=sizes.idle)
    say(f"[layers {name}] joined, idle measured; warm-up")
    warm = await publish_phase(members, sender, group, "w", 1, 0.0, sizes)
    if warm["lost"]:
        raise RuntimeError(f"{warm['lost']} members did not get the warm-up message")
    say(f"[layers {name}] direct")
    direct_count = max(1, round(sizes.direct_rate * sizes.direct_seconds))
    direct = await publish_phase(
        members,
        sender,
        group,
        "d",
        direct_count,
        sizes.direct_rate,
        sizes,
        channel=joined["channel"],
    )
    paced_count = max(1, round(sizes.paced_rate * sizes.paced_seconds))
    say(f"[layers {name}] paced")
    paced = await publish_phase(
        members, sender, group, "p", paced_count, sizes.paced_rate, sizes
    )
    say(f"[layers {name}] burst")
    burst = await publish_phase(members, sender, group, "b", sizes.burst, 0.0, sizes)
    say(f"[layers {name}] echo")
    echo = await sender.ask(
        sizes.echo * 5 + 60, "echo", channel=echo_channel, count=sizes.echo, within=5
    )
    if burst["errors"]:
        say(f"[layers {name}] receive errors: {burst['errors']}")
    return {
        "idle_cpu": idle["cpu"],
        "direct_p50": direct["p50"],
        "direct_p99": direct["p99"],
        "direct_behind": float(direct["behind"]),
        "burst_rate": burst["rate"],
        "burst_p50": burst["p50"],
        "burst_p99": burst["p99"],
        "paced_rate": paced["rate"],
        "paced_p50": paced["p50"],
        "paced_p99": paced["p99"],
        "paced_behind": float(paced["behind"]),
        "lost": float(direct["lost"] + paced["lost"] + burst["lost"] + echo["lost"]),
        "echo_p50": echo["p50"],
        "echo_p99": echo["p99"],
        "join_seconds": joined["join_seconds"],
    }


@dataclass
class LayerRun:
    """The figures of every measured layer, and why others were not."""

    sizes: Sizes
    results: dict[str, dict[str, float | None]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


async def measure_all(
    names: list[str],
    sizes: Sizes,
    *,
    deadline: float = float("inf"),
    say: Callable[[str], None] = print,
) -> LayerRun:
    """Measure each layer of ``names`` in turn, until ``deadline`` (monotonic)."""
    run = LayerRun(sizes)
    with tempfile.TemporaryDirectory(prefix="django_realtime-layers-") as directory:
        for name in names:
            if time.monotonic() > deadline:
                run.skipped[name] = "past the deadline"
                continue
            say(f"[layers {name}] ...")
            started = time.monotonic()
            try:
                run.results[name] = await measure(name, sizes, Path(directory), say)
            except Skipped as why:
                run.skipped[name] = str(why)
                say(f"[layers {name}] skipped: {why}")
            except Exception as error:
                run.failed[name] = f"{type(error).__name__}: {error}"
                say(f"[layers {name}] failed: {run.failed[name]}")
            else:
                say(f"[layers {name}] done ({time.monotonic() - started:.0f} s)")
    return run


def _cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "pct":
        return f"{value * 100:.2f}%"
    if unit == "rate":
        return f"{value:,.0f}"
    if unit == "count":
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def render(run: LayerRun) -> str:
    """Return the layers' table, then a line for each layer skipped or failed."""
    sizes = run.sizes
    paced = max(1, round(sizes.paced_rate * sizes.paced_seconds))
    lines = [
        f"Channel layers: {sizes.members:,} members in one process, the sender "
        f"in another; direct sends to one member at {sizes.direct_rate:g}/s for "
        f"{sizes.direct_seconds:g} s; paced {paced} group sends at "
        f"{sizes.paced_rate:g}/s, burst of {sizes.burst}; echo {sizes.echo} "
        f"round trips; idle {sizes.idle:g} s. Latencies in ms.",
        f"{'layer':<16}" + "".join(f"{heading:>11}" for _, heading, _ in COLUMNS),
    ]
    for name, values in run.results.items():
        cells = "".join(f"{_cell(values.get(k), u):>11}" for k, _, u in COLUMNS)
        mark = "" if LAYERS[name].cross_process else " (in-process)"
        lines.append(f"{name:<16}{cells}{mark}")
    for name, values in run.results.items():
        for phase in ("direct", "paced"):
            if values.get(f"{phase}_behind"):
                lines.append(
                    f"{name}: the sender fell behind the {phase} rate: "
                    f"{values[f'{phase}_behind']:.0f} sends started more than an "
                    "interval late (latency counts from when each was due)"
                )
    lines += [f"{name}: skipped, {why}" for name, why in run.skipped.items()]
    lines += [f"{name}: FAILED, {why}" for name, why in run.failed.items()]
    return "\n".join(lines)


def problems(run: LayerRun) -> list[str]:
    """Return what a smoke run must not show: failures, figures missing, losses."""
    found = [f"layer {name} failed: {why}" for name, why in run.failed.items()]
    for name, values in run.results.items():
        found += [
            f"layer {name}: no {key}"
            for key, _, _ in COLUMNS
            if values.get(key) is None
        ]
        if values.get("lost"):
            found.append(f"layer {name}: {values['lost']:.0f} lost")
    return found


def parse_names(value: str) -> list[str]:
    """Return the layer names of a comma-separated list."""
    names = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in names if item not in LAYERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"Expected some of {list(LAYERS)}, got {unknown}."
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layers", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--layers", type=parse_names, default=list(LAYERS))
    parser.add_argument("--smoke", action="store_true", help="small and quick")
    for size in fields(Sizes):
        option = "--" + size.name.replace("_", "-")
        parser.add_argument(option, type=type(getattr(Sizes(), size.name)))
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(Sizes)
        if getattr(args, f.name) is not None
    }
    sizes = replace(sizes, **overrides)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    run = asyncio.run(measure_all(args.layers, sizes, say=say))
    print(f"$ python -m benchmarks.layers {' '.join(sys.argv[1:])}".rstrip())
    print(render(run))
    return 1 if run.failed or (args.smoke and problems(run)) else 0


if __name__ == "__main__":
    sys.exit(main())
