"""The example chat on real servers: what the README promises, end to end.

Each test starts server processes from the repository root on free loopback
ports, on a freshly migrated SQLite file, and talks to them with real HTTP
and WebSocket clients. ``manage.py runserver`` is what the README tells
users to run; daphne and uvicorn are the production servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
APPLICATION = "example_project.asgi:application"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 10.0


# The command line of each server after the interpreter, for a free port.
SERVER_COMMANDS: dict[str, list[str]] = {
    "runserver": ["manage.py", "runserver", "127.0.0.1:{port}", "--noreload"],
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", APPLICATION],
    "uvicorn": ["-m", "uvicorn", "--host=127.0.0.1", "--port={port}", APPLICATION],
}

# How each server ends after a graceful shutdown on SIGTERM: uvicorn re-raises
# the signal once it has shut down, so that its parent sees why it ended.
EXIT_ON_SIGTERM = {"runserver": 0, "daphne": 0, "uvicorn": -signal.SIGTERM}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def example_env(db_path: Path, **overrides: str) -> dict[str, str]:
    """Return the environment of a process of the example project."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        EXAMPLE_DB_PATH=str(db_path),
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class ServerProcess:
    """One server process of the example project, its output kept in a file."""

    def __init__(self, server: str, env: dict[str, str], log_path: Path) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.argv = [sys.executable] + [
            arg.format(port=port) for arg in SERVER_COMMANDS[server]
        ]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_listening(self) -> None:
        """Return once the server accepts connections; fail if it ends first."""
        host, port = self.address.split(":")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.argv} exited with {self.process.returncode} before "
                    f"listening on {self.address}; its output:\n{self.output}"
                )
            with contextlib.suppress(OSError):
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            # A port of another process cannot be awaited; poll it briefly.
            time.sleep(0.05)
        pytest.fail(
            f"Expected {self.argv} to listen on {self.address} within "
            f"{STARTUP_TIMEOUT} s; its output:\n{self.output}"
        )

    def terminate(self) -> int:
        """Send SIGTERM and return the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"Expected {self.argv} to exit within {STOP_TIMEOUT} s of "
                f"SIGTERM; its output:\n{self.output}"
            )

    def kill(self) -> None:
        """Kill the server's process group if the server is still running."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def example_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a SQLite file migrated by ``manage.py migrate``, as a user would."""
    db_path = tmp_path_factory.mktemp("example") / "db.sqlite3"
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=example_env(db_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert db_path.exists()
    return db_path


Serve = Callable[..., ServerProcess]


@pytest.fixture
def serve(example_db: Path, tmp_path: Path) -> Iterator[Serve]:
    """Return a function that starts a server and returns it once it listens.

    ``serve("uvicorn", DJANGO_DEBUG="0")`` starts uvicorn with that extra
    environment. Every process started is killed at teardown, whatever the
    test did.
    """
    started: list[ServerProcess] = []

    def start(server: str, **env: str) -> ServerProcess:
        log_path = tmp_path / f"{server}-{len(started)}.log"
        process = ServerProcess(server, example_env(example_db, **env), log_path)
        started.append(process)
        process.wait_until_listening()
        return process

    yield start
    for process in started:
        process.kill()


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def open_socket(url: str) -> ClientConnection:
    return connect(url, open_timeout=IO_TIMEOUT, close_timeout=IO_TIMEOUT)


def say(client: ClientConnection, message: str) -> None:
    client.send(json.dumps({"message": message}))


def heard(client: ClientConnection) -> Any:
    return json.loads(client.recv(timeout=IO_TIMEOUT))


@pytest.mark.parametrize(
    ("server", "env"),
    [
        ("runserver", {}),
        ("daphne", {"DJANGO_DEBUG": "0"}),
        ("uvicorn", {"DJANGO_DEBUG": "0"}),
    ],
    ids=["runserver", "daphne", "uvicorn"],
)
def test_two_browsers_chat_in_a_room_then_the_server_stops_on_sigterm(
    serve: Serve, server: str, env: dict[str, str]
) -> None:
    chat = serve(server, **env)
    address = chat.address

    status, page = http_get(f"http://{address}/chat/lobby/")
    assert status == 200
    assert "<h1>Room lobby</h1>" in page
    assert 'id="chat-log"' in page
    assert '<script id="room-name" type="application/json">"lobby"</script>' in page
    assert "/static/chat/room.js" in page

    with (
        open_socket(f"ws://{address}/ws/chat/lobby/") as alice,
        open_socket(f"ws://{address}/ws/chat/lobby/") as bob,
    ):
        say(alice, "hello bob")
        assert heard(bob) == {"message": "hello bob"}
        assert heard(alice) == {"message": "hello bob"}
        say(bob, "hello alice")
        assert heard(alice) == {"message": "hello alice"}
        assert heard(bob) == {"message": "hello alice"}
        say(bob, "")
        assert set(heard(bob)) == {"error"}

    for path in ("/ws/nowhere/", "/ws/chat/semi;colon/"):
        with pytest.raises(InvalidStatus) as refused:
            open_socket(f"ws://{address}{path}")
        assert refused.value.response.status_code == 403, path

    assert chat.terminate() == EXIT_ON_SIGTERM[server], chat.output


def test_runserver_announces_itself_and_serves_the_room_script(serve: Serve) -> None:
    chat = serve("runserver")
    address = chat.address

    status, script = http_get(f"http://{address}/static/chat/room.js")

    assert status == 200
    assert "/ws/chat/" in script
    assert chat.terminate() == 0, chat.output
    output = chat.output
    assert f"Starting ASGI/Daphne development server at http://{address}/" in output
    assert "using settings 'example_project.settings'" in output
    assert "HTTP GET /static/chat/room.js 200" in output


@pytest.fixture
def redis_url() -> str:
    """Return the URL of the Redis server; skip (fail under CI=true) if it is down."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as error:
        answer = f"{error}".encode()
    if answer.startswith(b"+PONG"):
        return "redis://127.0.0.1:6379"
    reason = f"Redis is not answering on 127.0.0.1:6379: {answer!r}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


@pytest.mark.redis
def test_rooms_span_server_processes_through_redis(
    serve: Serve, redis_url: str
) -> None:
    daphne = serve("daphne", REDIS_URL=redis_url, DJANGO_DEBUG="0")
    uvicorn = serve("uvicorn", REDIS_URL=redis_url, DJANGO_DEBUG="0")
    # A room of its own, so that concurrent runs on the same Redis never meet.
    room = f"e2e-{uuid.uuid4().hex}"

    with (
        open_socket(f"ws://{daphne.address}/ws/chat/{room}/") as alice,
        open_socket(f"ws://{uvicorn.address}/ws/chat/{room}/") as bob,
    ):
        say(alice, "across processes")
        assert heard(bob) == {"message": "across processes"}
        assert heard(alice) == {"message": "across processes"}
        say(bob, "and back")
        assert heard(alice) == {"message": "and back"}

    assert daphne.terminate() == EXIT_ON_SIGTERM["daphne"], daphne.output
    assert uvicorn.terminate() == EXIT_ON_SIGTERM["uvicorn"], uvicorn.output
