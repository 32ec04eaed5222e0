"""What the soak run measures.

A :class:`Snapshot` is read from ``/proc`` (the server's RSS and open file
descriptors, the load client's open file descriptors), from Redis (the
server's connections in ``CLIENT LIST``, found by the name every one of
them carries, and the keys of the run's prefix) and from the application's
``/soak/stats`` endpoint (live consumers, tasks, tracked objects).
:func:`scan_log` finds errors and tracebacks in the server's output.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from benchmarks.servers import Server

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


def redis_clients(client: Any, prefix: str) -> int:
    """Return how many connections named after ``prefix`` the server has.

    Args:
        client: A synchronous ``redis.Redis``.
        prefix: The run's prefix: the names of the server's connections
            start with it.
    """
    names = [entry.get("name", "") for entry in client.client_list()]
    return sum(1 for name in names if name.startswith(prefix))


def redis_figures(client: Any, prefix: str) -> tuple[int, int]:
    """Return (connections named after ``prefix``, keys under ``prefix``).

    Args:
        client: A synchronous ``redis.Redis``.
        prefix: The run's prefix: the names of the server's connections and
            its keys start with it.
    """
    keys = sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000))
    return redis_clients(client, prefix), keys


def app_stats(server: Server) -> dict[str, Any]:
    """Return the JSON of the application's ``/soak/stats`` endpoint."""
    url = f"http://127.0.0.1:{server.port}/soak/stats"
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
