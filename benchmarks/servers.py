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
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Quiet, comparable settings: no access log, no lifespan (Channels' router
# refuses it), a listen backlog of 4096 (daphne's default of 50 would drop
# SYNs of a burst of connects, measuring the kernel's retry timer instead of
# the server), keepalive pings still sent but given 5 minutes to be answered
# (a server minutes behind on a burst is measured, not cut off by its own
# keepalive), everything else as the server's defaults.
COMMANDS: dict[str, list[str]] = {
    "uvicorn": [
        "-m",
        "uvicorn",
        "--host=127.0.0.1",
        "--port={port}",
        "--backlog=4096",
        "--lifespan=off",
        "--no-access-log",
        "--log-level=warning",
        "--ws-ping-timeout=300",
        "{app}",
    ],
    "daphne": [
        "-m",
        "daphne",
        "-e",
        "tcp:port={port}:interface=127.0.0.1:backlog=4096",
        "-v",
        "0",
        "--ping-timeout=300",
        "{app}",
    ],
}

_running: set[Server] = set()
_started: list[Server] = []


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin(cpu: int | None) -> None:
    """Pin the calling process to ``cpu`` (nothing if ``None``)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


class ServerError(RuntimeError):
    """A server did not start, or died while it was measured."""


class Server:
    """One ASGI server process serving one application.

    Args:
        server: ``"uvicorn"`` or ``"daphne"``.
        app: ``"module:attribute"`` of the ASGI application.
        env: Extra environment (settings module, database, layer).
        cpu: The core to pin the process to, or ``None``.
        log_path: Where the server's output goes.
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
        self.port = free_port()
        self.log_path = log_path
        argv = [arg.format(port=self.port, app=app) for arg in COMMANDS[server]]
        environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        )
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: pin(cpu),
            )
        _running.add(self)
        _started.append(self)
        self._wait_until_listening(startup_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} before "
                    f"listening on port {self.port}:\n{self.output[-3000:]}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"{self.name} did not listen on port {self.port} within "
                    f"{timeout} s:\n{self.output[-3000:]}"
                )
            time.sleep(0.05)

    def check_alive(self) -> None:
        """Raise :class:`ServerError` if the server has died."""
        if self.process.poll() is not None:
            raise ServerError(
                f"{self.name} died with {self.process.returncode}:\n"
                f"{self.output[-3000:]}"
            )

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
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


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
