"""What the soak run measures, and how it judges it.

A :class:`Snapshot` is read from ``/proc`` (the server's RSS and open file
descriptors, the load client's open file descriptors), from Redis (the
server's connections in ``CLIENT LIST``, found by the name every one of
them carries, and the keys of the run's prefix) and from the application's
``/soak/stats`` endpoint (live consumers, tasks, tracked objects).
:func:`scan_log` finds errors and tracebacks in the server's output;
:func:`table` and :func:`checks` make the report.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from benchmarks._servers import Server

# What counts as an exception in the server's log: a traceback, or a log
# record at ERROR or CRITICAL (the settings' format starts with the level).
_ERROR_LINE = re.compile(r"^(Traceback|ERROR|CRITICAL)\b|Exception in ", re.MULTILINE)
_WARNING_LINE = re.compile(r"^WARNING\b", re.MULTILINE)


def open_fds(pid: int | str = "self") -> int:
    """Return how many file descriptors the process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Snapshot:
    """The figures of one moment of a run; ``None`` where not measured."""

    rss_kib: int
    server_fds: int
    client_fds: int
    redis_clients: int | None
    redis_keys: int | None
    app: dict[str, Any] = field(default_factory=dict)


def redis_figures(client: Any, prefix: str) -> tuple[int, int]:
    """Return (connections named after ``prefix``, keys under ``prefix``).

    Args:
        client: A synchronous ``redis.Redis``.
        prefix: The run's prefix: the names of the server's connections and
            its keys start with it.
    """
    names = [entry.get("name", "") for entry in client.client_list()]
    clients = sum(1 for name in names if name.startswith(prefix))
    keys = sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))
    return clients, keys


def app_stats(server: Server, *, trim: bool = False) -> dict[str, Any]:
    """Return the JSON of the application's ``/soak/stats`` endpoint."""
    query = "?trim=1" if trim else ""
    url = f"http://127.0.0.1:{server.port}/soak/stats{query}"
    with urllib.request.urlopen(url, timeout=60) as answer:
        stats: dict[str, Any] = json.load(answer)
    return stats


def snapshot(
    server: Server, redis: Any | None, prefix: str, *, with_app: bool = True
) -> Snapshot:
    """Measure ``server`` now: ``/proc`` and Redis first, then the endpoint.

    The endpoint runs a full garbage collection; it is asked last, so that
    it does not change the figures read before.
    """
    rss = server.rss_kib()
    fds = open_fds(server.pid)
    clients = keys = None
    if redis is not None:
        clients, keys = redis_figures(redis, prefix)
    taken = Snapshot(rss, fds, open_fds(), clients, keys)
    if with_app:
        taken.app = app_stats(server)
    return taken


@dataclass
class LogScan:
    """Errors and warnings found in a server's output."""

    errors: int
    warnings: int
    samples: list[str]


def scan_log(text: str, samples: int = 5) -> LogScan:
    """Count error lines (tracebacks, ERROR, CRITICAL) and WARNING lines."""
    errors = [match.start() for match in _ERROR_LINE.finditer(text)]
    lines = [text[start : text.find("\n", start)] for start in errors[:samples]]
    return LogScan(len(errors), len(_WARNING_LINE.findall(text)), lines)


@dataclass
class Check:
    """One line of a run's verdict."""

    name: str
    ok: bool
    detail: str


def checks(
    baseline: Snapshot,
    after: Snapshot,
    log: LogScan,
    client_failures: int,
    rss_factor: float,
) -> list[Check]:
    """Return the verdict of one cycle against the baseline."""
    limit = baseline.rss_kib * rss_factor
    result = [
        Check("exceptions", log.errors == 0, f"{log.errors} error lines in the log"),
        Check(
            "client failures",
            client_failures == 0,
            f"{client_failures} failed handshakes, drops or missed deliveries",
        ),
        Check(
            "RSS",
            after.rss_kib <= limit,
            f"{after.rss_kib / 1024:.1f} MiB after, limit {limit / 1024:.1f} MiB "
            f"({rss_factor:.2f} x {baseline.rss_kib / 1024:.1f} MiB)",
        ),
        Check(
            "server fds",
            after.server_fds == baseline.server_fds,
            f"{after.server_fds} after, {baseline.server_fds} at baseline",
        ),
        Check(
            "client fds",
            after.client_fds == baseline.client_fds,
            f"{after.client_fds} after, {baseline.client_fds} at baseline",
        ),
    ]
    if baseline.redis_clients is not None:
        result.append(
            Check(
                "Redis clients",
                after.redis_clients == baseline.redis_clients,
                f"{after.redis_clients} after, {baseline.redis_clients} at baseline",
            )
        )
        result.append(
            Check(
                "Redis keys",
                after.redis_keys == baseline.redis_keys,
                f"{after.redis_keys} after, {baseline.redis_keys} at baseline",
            )
        )
    consumers = after.app.get("consumers")
    if consumers is not None:
        result.append(
            Check("live consumers", consumers == 0, f"{consumers} after all closed")
        )
    return result


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


_LABEL = 24
_ALLOCATOR_ROWS = [
    ("pymalloc arenas (MiB)", "pymalloc_arenas_kib"),
    ("pymalloc used (MiB)", "pymalloc_used_kib"),
    ("glibc heap used (MiB)", "glibc_used_kib"),
    ("glibc heap free (MiB)", "glibc_free_kib"),
]


def _app_mib(app: dict[str, Any], key: str) -> str | None:
    kib = app.get(key)
    return None if kib is None else _mib(kib)


def _value(snap: Snapshot, row: str) -> str:
    app = snap.app
    values: dict[str, object] = {
        **{row: _app_mib(app, key) for row, key in _ALLOCATOR_ROWS},
        "RSS (MiB)": _mib(snap.rss_kib),
        "server fds": snap.server_fds,
        "client fds": snap.client_fds,
        "Redis clients": snap.redis_clients,
        "Redis keys": snap.redis_keys,
        "live consumers": app.get("consumers"),
        "asyncio tasks": app.get("tasks"),
        "gc objects": app.get("gc_objects"),
    }
    value = values[row]
    return "-" if value is None else str(value)


def table(columns: list[tuple[str, Snapshot]]) -> str:
    """Return the snapshots side by side, one row per figure."""
    rows = [
        "RSS (MiB)",
        "server fds",
        "client fds",
        "Redis clients",
        "Redis keys",
        "live consumers",
        "asyncio tasks",
        "gc objects",
        *(row for row, _ in _ALLOCATOR_ROWS),
    ]
    width = max(12, *(len(name) + 2 for name, _ in columns))
    lines = ["".ljust(_LABEL) + "".join(name.rjust(width) for name, _ in columns)]
    for row in rows:
        cells = [_value(snap, row) for _, snap in columns]
        if all(cell == "-" for cell in cells):
            continue
        lines.append(row.ljust(_LABEL) + "".join(cell.rjust(width) for cell in cells))
    return "\n".join(lines)
