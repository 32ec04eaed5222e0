"""The HTTP transports under ``manage.py runserver`` (daphne, ASGI)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.streams_http.client import RoundRobinClient
from tests.servers import ROOT, free_port

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture
def runserver(server_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **server_env, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "runserver.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "runserver",
            "--noreload",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "runserver.log").read_text()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "runserver did not listen"
            time.sleep(0.05)  # another process's listening cannot be awaited
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        log.close()


def test_runserver_serves_posts_long_polls_and_event_streams(runserver: str) -> None:
    client = RoundRobinClient([runserver])
    client.poll(timeout=0)
    (subscribed,) = client.subscribe("open.dev")
    assert subscribed["kind"] == "subscribed"
    (reply,) = client.request("publish", {"stream": "open.dev", "data": {"n": 1}})
    assert reply["kind"] == "reply"
    (publication,) = client.poll()
    assert publication["data"] == {"n": 1}
    events = client.events(runserver)
    assert next(events)[0] == "client"
    client.request("publish", {"stream": "open.dev", "data": {"n": 2}})
    event, data = next(events)
    events.close()
    assert (event, data["data"]) == ("message", {"n": 2})
