"""Start the ASGI servers of every benchmark: pinned to a core, watched, killed.

The one way the suite and the stress runs start a server. Each server is
one child process (``python -m uvicorn`` or ``python -m daphne``, no
reloader, no workers) in a session of its own, pinned to one core with
``os.sched_setaffinity`` before it execs, so its pid is the server's pid:
memory and CPU time are read from ``/proc/<pid>``. Servers still running
when the process exits are killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from django_realtime.testing import _servers
from django_realtime.testing._servers import ServerError, free_port

__all__ = [
    "ROOT",
    "Server",
    "ServerError",
    "free_port",
    "kill_all",
    "pin",
    "running",
    "serving",
]

ROOT = Path(__file__).resolve().parents[1]

# Comparable settings: the launcher's (no access log, no lifespan, a listen
# backlog of 4096, so that a burst of connects measures the server, not the
# kernel's SYN retry timer), plus keepalive pings still sent but given 5
# minutes to be answered (a server minutes behind on a burst is measured,
# not cut off by its own keepalive), everything else as the server's
# defaults.
OPTIONS: dict[str, list[str]] = {
    "uvicorn": ["--ws-ping-timeout=300"],
    "daphne": ["--ping-timeout=300"],
}

_running: set[Server] = set()
_started: list[Server] = []


def pin(cpu: int | None) -> None:
    """Pin the calling process to ``cpu`` (nothing if ``None``)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


class Server(_servers.ServerProcess):
    """One ASGI server process serving one application, pinned to a core.

    Args:
        server: ``"uvicorn"`` or ``"daphne"``.
        app: ``"module:attribute"`` of the ASGI application.
        env: Extra environment (settings module, database, layer).
        cpu: The core to pin the process to, or ``None``.
        log_path: Where the server's output goes.

    Raises:
        ServerError: The server exited, or did not listen in time.
    """

    def __init__(
        self,
        server: str,
        app: str,
        env: Mapping[str, str],
        cpu: int | None,
        log_path: Path,
        startup_timeout: float = 30.0,
    ) -> None:
        self.name = server
        super().__init__(
            server,
            app,
            env,
            log_path,
            root=ROOT,
            options=OPTIONS[server],
            startup_timeout=startup_timeout,
            cpu=cpu,
        )
        _running.add(self)
        _started.append(self)

    def rss_kib(self) -> int:
        """Return the server's resident set size (VmRSS) in KiB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise ServerError(f"No VmRSS in /proc/{self.pid}/status.")

    def cpu_seconds(self) -> float:
        """Return the user + system CPU time the server has used."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); [0] is field 3.
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """Kill the server's whole session; wait for it to end."""
        _running.discard(self)
        super().kill()


@contextlib.contextmanager
def serving(
    server: str,
    app: str,
    env: Mapping[str, str],
    cpu: int | None,
    log_path: Path,
) -> Iterator[Server]:
    """Run a :class:`Server` for the ``with`` block; kill it after, whatever happens."""
    started = Server(server, app, env, cpu, log_path)
    try:
        yield started
    finally:
        started.kill()


def running() -> list[int]:
    """Return the pids of the servers this process started that still run."""
    return [server.pid for server in _started if server.process.poll() is None]


def kill_all() -> None:
    """Kill every server still running (at exit, or on a signal)."""
    for server in list(_running):
        server.kill()


atexit.register(kill_all)
