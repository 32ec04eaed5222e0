"""Hostile handshakes against real uvicorn and daphne processes on loopback.

The server runs the recommended middleware stack (tests/security_app.py)
and logs one line per record; a handshake whose path carries ``%0a``
followed by a log line of its own is refused by each layer of the stack in
turn, and the server's output must not show the forged line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.security_app:application"
COMMANDS = {
    "uvicorn": ["-m", "uvicorn", "--host=127.0.0.1", "--port={port}", APP],
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", APP],
}
FORGED = "%0aCRITICAL%20django.security:%20forged%20by%20the%20client"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(kind: str, log_path: Path, **env: str) -> Iterator[int]:
    """Run ``kind`` on a free port for the ``with`` block; yield the port."""
    port = free_port()
    argv = [arg.format(port=port) for arg in COMMANDS[kind]]
    environment = {
        **os.environ,
        **env,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{kind} did not listen:\n{log_path.read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.05)  # another process's listening cannot be awaited
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


async def open_socket(port: int, path: str, origin: str) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}{path}",
        origin=Origin(origin),
        proxy=None,
        open_timeout=10,
    )


async def assert_refused(port: int, path: str, origin: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(port, path, origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_a_refused_handshake_cannot_forge_a_log_line(
    kind: str, tmp_path: Path
) -> None:
    log_path = tmp_path / f"{kind}.log"
    with serving(kind, log_path, SECURITY_E2E_MAX_PER_ADDRESS="1") as port:
        own = f"http://127.0.0.1:{port}"
        # The origin check refuses a foreign page, no login needed.
        await assert_refused(port, f"/ws/echo/{FORGED}", "http://evil.test")
        # The router refuses a path it does not know.
        await assert_refused(port, f"/ws/nowhere/{FORGED}", own)
        # The connection limits refuse a second socket from the address.
        holder = await open_socket(port, "/ws/echo/", own)
        await assert_refused(port, f"/ws/echo/{FORGED}", own)
        await holder.close()

    lines = log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith("CRITICAL")], lines
    refusals = [line for line in lines if "\\nCRITICAL django.security" in line]
    assert len(refusals) == 3, lines
