"""Real uvicorn and daphne processes for end-to-end tests, on loopback ports.

:class:`ServerProcess` starts one server (``python -m uvicorn`` or
``python -m daphne``, no reloader) serving an ASGI application of this
checkout, in a session of its own, and returns once it listens;
:meth:`ServerProcess.kill` ends the whole session. :func:`serving` kills it
after a ``with`` block, whatever happens in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# No access log, no lifespan (the tests' routers refuse it), a backlog large
# enough for a burst of connects.
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


class ServerProcess:
    """One uvicorn or daphne process serving ``app``, started by the constructor.

    Args:
        kind: ``"uvicorn"`` or ``"daphne"``.
        app: The application as ``"module:attribute"``.
        env: Environment added to this process's (settings module, options).
        log_path: Where the server's output goes.
        options: More command-line options, e.g. ``("--workers=2",)``.
        startup_timeout: Seconds the server has to listen.

    Raises:
        RuntimeError: The server exited, or did not listen in time; the
            message ends with its output.
    """

    def __init__(
        self,
        kind: str,
        app: str,
        env: Mapping[str, str],
        log_path: Path,
        options: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.log_path = log_path
        argv = [arg.format(port=self.port) for arg in COMMANDS[kind]]
        environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        )
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, *argv, *options, app],
                cwd=ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Expected {kind} to listen on port {self.port}, got an exit "
                    f"with {self.process.returncode}:\n{self.output[-3000:]}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"Expected {kind} to listen on port {self.port} within "
                    f"{startup_timeout} s, got nothing:\n{self.output[-3000:]}"
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
        """Raise ``RuntimeError`` with the server's output if it has died."""
        if self.process.poll() is not None:
            raise RuntimeError(
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


@contextlib.contextmanager
def serving(
    kind: str,
    app: str,
    env: Mapping[str, str],
    log_path: Path,
    options: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """Run a :class:`ServerProcess` for the ``with`` block; kill it after."""
    server = ServerProcess(kind, app, env, log_path, options)
    try:
        yield server
    finally:
        server.kill()
