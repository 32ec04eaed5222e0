"""Start uvicorn or daphne in a child process and return once it listens.

Private: the test suite's and the benchmarks' way of running an ASGI
application of a checkout on a real server (``python -m uvicorn`` or
``python -m daphne``, no reloader, no workers), each with its own wrapper
(``tests/servers.py``, ``benchmarks/servers.py``). Applications under test
use :class:`~django_realtime.testing.LiveServer` instead.

The server runs in a session of its own, so that :meth:`ServerProcess.kill`
ends it with whatever it started; its pid is the server's pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["COMMANDS", "ServerError", "ServerProcess", "free_port"]

#: The command line of each server after the interpreter, for ``{port}``: no
#: access log, no lifespan (routers that refuse it), and a listen backlog
#: large enough for a burst of connects (daphne's default of 50 drops SYNs).
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
    ],
    "daphne": [
        "-m",
        "daphne",
        "-e",
        "tcp:port={port}:interface=127.0.0.1:backlog=4096",
        "-v",
        "0",
    ],
}


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerError(RuntimeError):
    """A server did not start, or is no longer running."""


class ServerProcess:
    """One uvicorn or daphne process serving ``app``, started by the constructor.

    Args:
        kind: ``"uvicorn"`` or ``"daphne"``.
        app: The application as ``"module:attribute"``.
        env: Environment added to this process's (settings module, options).
        log_path: Where the server's output goes.
        root: The checkout the application is imported from: the server's
            working directory, put first on its ``PYTHONPATH``.
        options: More command-line options, e.g. ``("--workers=2",)``.
        startup_timeout: Seconds the server has to listen.
        cpu: The core to pin the server to (``os.sched_setaffinity`` before
            it starts), or ``None``.

    Raises:
        ServerError: The server exited, or did not listen in time; the
            message ends with its output.
    """

    def __init__(
        self,
        kind: str,
        app: str,
        env: Mapping[str, str],
        log_path: Path,
        *,
        root: Path,
        options: Sequence[str] = (),
        startup_timeout: float = 30.0,
        cpu: int | None = None,
    ) -> None:
        if kind not in COMMANDS:
            raise ValueError(
                f"Expected a server among {sorted(COMMANDS)}, got {kind!r}."
            )
        self.kind = kind
        self.port = free_port()
        self.log_path = log_path
        argv = [arg.format(port=self.port) for arg in COMMANDS[kind]]
        environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(root), os.environ.get("PYTHONPATH")])
        )
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, *argv, *options, app],
                cwd=root,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if cpu is None else lambda: _pin(cpu),
            )
        self._wait_until_listening(startup_timeout)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"Expected {self.kind} to listen on port {self.port}, got an "
                    f"exit with {self.process.returncode}:\n{self.output[-3000:]}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(
                    f"Expected {self.kind} to listen on port {self.port} within "
                    f"{timeout} s, got nothing:\n{self.output[-3000:]}"
                )
            time.sleep(0.05)  # another process's listening cannot be awaited

    @property
    def pid(self) -> int:
        """Return the server's process id."""
        return self.process.pid

    def url(self, path: str) -> str:
        """Return the ``ws://`` URL of ``path`` on this server."""
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def output(self) -> str:
        """Return what the server has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        """Raise :class:`ServerError` with the server's output if it has died."""
        if self.process.poll() is not None:
            raise ServerError(
                f"Expected {self.kind} to be running, got an exit with "
                f"{self.process.returncode}:\n{self.output[-3000:]}"
            )

    def kill(self) -> None:
        """Kill the server's whole session and wait for it to end."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
