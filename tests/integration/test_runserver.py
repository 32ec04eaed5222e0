"""The runserver command: daphne serves ASGI_APPLICATION, with Django's flags."""

from __future__ import annotations

import contextlib
import importlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import IO, Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from websockets.sync.client import connect

from django_realtime.management.commands import runserver
from django_realtime.servers.daphne import FlowControl

PROJECT = Path(__file__).resolve().parents[1] / "runserver_project"
MANAGE = PROJECT / "manage.py"
APP = "tests.runserver_project.asgi.application"
BANNER = "Starting ASGI/Daphne development server at"


class RecordingServer:
    """Stand in for daphne's Server: keep the arguments, bind nothing."""

    instances: list[RecordingServer] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.listening_addresses: list[tuple[str, int]] = []
        RecordingServer.instances.append(self)

    def run(self) -> None:
        self.listening_addresses.append(("127.0.0.1", 8000))
        self.kwargs["ready_callable"]()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[RecordingServer]:
    """Run the command against a recording server, without migrations checks."""
    settings.ASGI_APPLICATION = APP
    RecordingServer.instances = []
    monkeypatch.setattr(runserver.Command, "asgi_server_cls", RecordingServer)
    monkeypatch.setattr(runserver.Command, "check_migrations", lambda self: None)
    return RecordingServer.instances


def run_command(*args: str) -> tuple[RecordingServer, str]:
    out = StringIO()
    call_command("runserver", *args, "--noreload", stdout=out)
    return RecordingServer.instances[-1], out.getvalue()


def test_command_serves_asgi_application_with_daphne(
    recorded: list[RecordingServer],
) -> None:
    from tests.runserver_project.asgi import application

    server, out = run_command("127.0.0.1:8123")

    # Behind flow control, whatever middleware the project puts around it.
    assert isinstance(server.kwargs["application"], FlowControl)
    assert server.kwargs["application"].application is application
    assert server.kwargs["endpoints"] == ["tcp:port=8123:interface=127.0.0.1"]
    assert server.kwargs["signal_handlers"] is True
    assert server.kwargs["root_path"] == ""
    assert server.kwargs["http_timeout"] is None
    assert server.kwargs["websocket_handshake_timeout"] == 5.0
    assert "Starting ASGI/Daphne development server at http://127.0.0.1:8000/" in out
    assert "django_realtime" in out


def test_the_default_server_is_daphnes_own() -> None:
    from daphne.server import Server

    assert runserver.Command.asgi_server_cls is Server


@pytest.mark.parametrize(
    ("args", "endpoint", "shown"),
    [
        (["8124"], "tcp:port=8124:interface=127.0.0.1", "http://127.0.0.1:8000/"),
        (
            ["[::1]:8125"],
            r"tcp:port=8125:interface=\:\:1",
            "http://[::1]:8000/",
        ),
        (["--ipv6", "8126"], r"tcp:port=8126:interface=\:\:1", "http://[::1]:8000/"),
        (["0:8127"], "tcp:port=8127:interface=0.0.0.0", "http://0.0.0.0:8000/"),
        ([], "tcp:port=8000:interface=127.0.0.1", "http://127.0.0.1:8000/"),
    ],
)
def test_addrport_and_ipv6_become_the_daphne_endpoint(
    recorded: list[RecordingServer], args: list[str], endpoint: str, shown: str
) -> None:
    server, out = run_command(*args)

    assert server.kwargs["endpoints"] == [endpoint]
    assert shown in out


def test_flags_django_users_know_are_accepted(
    recorded: list[RecordingServer],
) -> None:
    server, _ = run_command("8128", "--nothreading", "--skip-checks", "-v", "2")

    assert server.kwargs["verbosity"] == 2


def test_daphne_timeouts_are_passed_through(recorded: list[RecordingServer]) -> None:
    server, _ = run_command(
        "8129", "--http-timeout", "30", "--websocket-handshake-timeout", "2.5"
    )

    assert server.kwargs["http_timeout"] == 30.0
    assert server.kwargs["websocket_handshake_timeout"] == 2.5


def test_force_script_name_is_the_root_path(
    recorded: list[RecordingServer], settings: Any
) -> None:
    settings.FORCE_SCRIPT_NAME = "/app"

    server, _ = run_command("8130")

    assert server.kwargs["root_path"] == "/app"


@pytest.mark.parametrize(
    ("debug", "flags", "wrapped"),
    [
        (False, [], False),
        (True, [], True),
        (False, ["--insecure"], True),
        (True, ["--nostatic"], False),
        (False, ["--insecure", "--nostatic"], False),
    ],
)
def test_static_files_are_served_only_with_debug_or_insecure(
    recorded: list[RecordingServer],
    settings: Any,
    debug: bool,
    flags: list[str],
    wrapped: bool,
) -> None:
    settings.DEBUG = debug

    server, _ = run_command("8131", *flags)

    application = server.kwargs["application"]
    assert isinstance(application, runserver.StaticFilesRouter) is wrapped


async def test_static_router_sends_only_http_through_the_static_handler() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    router = runserver.StaticFilesRouter(app)
    handled: list[str] = []

    async def static(scope: dict[str, Any], receive: Any, send: Any) -> None:
        handled.append(scope["type"])

    router.static_handler = static

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: dict[str, Any]) -> None:
        return None

    await router({"type": "websocket", "path": "/static/x"}, nothing, ignore)
    await router({"type": "http", "path": "/static/x"}, nothing, ignore)

    assert seen == ["websocket"]
    assert handled == ["http"]


def test_missing_asgi_application_is_a_command_error(
    recorded: list[RecordingServer], settings: Any
) -> None:
    del settings.ASGI_APPLICATION

    with pytest.raises(CommandError, match=r"ASGI_APPLICATION.*not set.*--noasgi"):
        run_command("8132")


def test_unimportable_asgi_application_is_a_command_error(
    recorded: list[RecordingServer], settings: Any
) -> None:
    settings.ASGI_APPLICATION = "tests.no_such_module.application"

    with pytest.raises(CommandError, match=r"tests\.no_such_module"):
        run_command("8133")


def test_noasgi_delegates_to_djangos_wsgi_server(
    recorded: list[RecordingServer], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.management.commands import runserver as core_runserver

    settings.DEBUG = True
    calls: list[tuple[Any, ...]] = []

    def fake_run(addr: str, port: int, handler: Any, **kwargs: Any) -> None:
        calls.append((addr, port, handler, kwargs["server_cls"]))

    monkeypatch.setattr(core_runserver, "run", fake_run)

    call_command("runserver", "127.0.0.1:8134", "--noreload", "--noasgi")

    assert RecordingServer.instances == []
    ((addr, port, handler, server_cls),) = calls
    assert (addr, port) == ("127.0.0.1", 8134)
    assert isinstance(handler, StaticFilesHandler)
    assert server_cls is core_runserver.Command.server_cls


def test_command_extends_staticfiles_runserver_when_installed() -> None:
    from django.contrib.staticfiles.management.commands import (
        runserver as static_runserver,
    )

    assert issubclass(runserver.Command, static_runserver.Command)


def test_command_extends_core_runserver_without_staticfiles(settings: Any) -> None:
    from django.contrib.staticfiles.management.commands import (
        runserver as static_runserver,
    )
    from django.core.management.commands import runserver as core_runserver

    apps_without_static = [
        name for name in settings.INSTALLED_APPS if name != "django.contrib.staticfiles"
    ]
    try:
        with override_settings(INSTALLED_APPS=apps_without_static):
            module = importlib.reload(runserver)
            assert issubclass(module.Command, core_runserver.Command)
            assert not issubclass(module.Command, static_runserver.Command)
    finally:
        importlib.reload(runserver)


def make_command(verbosity: int) -> tuple[runserver.Command, StringIO]:
    out = StringIO()
    command = runserver.Command(stdout=out, no_color=True)
    command._verbosity = verbosity
    return command, out


HTTP_DETAILS = {
    "method": "GET",
    "path": "/x",
    "status": 404,
    "client": "127.0.0.1:5",
    "time_taken": 0.5,
}
WS_DETAILS = {"path": "/ws", "client": "127.0.0.1:6"}


def test_access_log_writes_http_and_websocket_lines_to_stdout() -> None:
    command, out = make_command(verbosity=1)

    command.log_action("http", "complete", HTTP_DETAILS)
    command.log_action("websocket", "connecting", WS_DETAILS)
    command.log_action("websocket", "connected", WS_DETAILS)
    command.log_action("websocket", "rejected", WS_DETAILS)
    command.log_action("websocket", "disconnected", WS_DETAILS)

    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "HTTP GET /x 404 [0.50, 127.0.0.1:5]",
        "WebSocket CONNECT /ws [127.0.0.1:6]",
        "WebSocket REJECT /ws [127.0.0.1:6]",
        "WebSocket DISCONNECT /ws [127.0.0.1:6]",
    ]


def test_access_log_is_silent_at_verbosity_0_and_adds_handshakes_at_2() -> None:
    quiet, quiet_out = make_command(verbosity=0)
    chatty, chatty_out = make_command(verbosity=2)

    for command in (quiet, chatty):
        command.log_action("http", "complete", HTTP_DETAILS)
        command.log_action("websocket", "connecting", WS_DETAILS)

    assert quiet_out.getvalue() == ""
    assert "WebSocket HANDSHAKING /ws" in chatty_out.getvalue()


# Real servers: the command started as a process, on a free loopback port.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A ``manage.py runserver`` process whose output is read line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.runserver_project.settings",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self.pump = threading.Thread(target=self._pump, args=(self.process.stdout,))
        self.pump.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")

    def close(self) -> None:
        """Kill what is left of the process group and release the pipe."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            # Reloader children may outlive the parent.
            os.killpg(self.process.pid, signal.SIGKILL)
        self.pump.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def wait_for(self, text: str, timeout: float = 20) -> str:
        """Return the first output line containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                line = None
            if line is None or (line == "" and self.process.poll() is not None):
                raise AssertionError(
                    f"Expected {text!r} in the output within {timeout}s, got:\n"
                    + "".join(self.output)
                )
            self.output.append(line)
            if text in line:
                return line

    def stop(self, sig: int = signal.SIGTERM, group: bool = False) -> int:
        if self.process.poll() is None:
            if group:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
            raise


@pytest.fixture
def server_processes() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.close()


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def websocket_echo(url: str, text: str) -> str:
    with connect(url, open_timeout=10, close_timeout=5) as websocket:
        websocket.send(text)
        reply = websocket.recv(timeout=10)
    return str(reply)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_runserver_serves_http_websocket_and_static_then_exits_on_sigterm(
    server_processes: list[ServerProcess],
) -> None:
    port = free_port()
    server = ServerProcess(f"127.0.0.1:{port}", "--noreload", "--insecure")
    server_processes.append(server)

    banner = server.wait_for(BANNER)
    assert f"http://127.0.0.1:{port}/" in banner
    server.wait_for("django_realtime")

    assert http_get(f"http://127.0.0.1:{port}/") == (200, "runserver project index")
    server.wait_for("HTTP GET / 200")
    assert http_get(f"http://127.0.0.1:{port}/static/hello.txt") == (
        200,
        "hello static\n",
    )
    assert websocket_echo(f"ws://127.0.0.1:{port}/echo", "ping") == "ping"
    server.wait_for("WebSocket CONNECT /echo")

    assert server.stop(signal.SIGTERM) == 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_runserver_with_autoreloader_serves_websocket(
    server_processes: list[ServerProcess],
) -> None:
    port = free_port()
    server = ServerProcess(f"127.0.0.1:{port}", env={"RUNSERVER_DEBUG": "1"})
    server_processes.append(server)

    server.wait_for(BANNER)

    assert websocket_echo(f"ws://127.0.0.1:{port}/", "through the reloader") == (
        "through the reloader"
    )
    assert http_get(f"http://127.0.0.1:{port}/static/hello.txt")[0] == 200
    server.stop(signal.SIGTERM, group=True)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_runserver_on_a_busy_port_exits_1_with_an_error(
    server_processes: list[ServerProcess],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = ServerProcess(f"127.0.0.1:{port}", "--noreload")
        server_processes.append(server)

        line = server.wait_for("Error:")
        # Why, as daphne reported it.
        assert f"127.0.0.1:{port}" in line
        assert server.process.wait(timeout=15) == 1
