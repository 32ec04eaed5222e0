"""``manage.py realtime connect`` against a real daphne, frames piped in.

The server (:mod:`tests.e2e.ops.connect_app`) and each command run as
their own processes on the test database of this one, where a user is
made; the command logs the user in to a session of the shared store, as
the command line of a developer would against their runserver. Then
``realtime tail`` is stopped with Ctrl-C (SIGINT), as a developer stops it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection

from django_realtime.testing import LiveServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(90),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[3]
APPLICATION = "tests.e2e.ops.connect_app:application"
IO_TIMEOUT = 30


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: object) -> Iterator[LiveServer]:
    with LiveServer(APPLICATION, databases=["default"]) as live_server:
        yield live_server


@pytest.fixture
def alice() -> str:
    get_user_model().objects.create_user("alice", password="unused-Password-1")
    return "alice"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "realtime", *args]


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.ops.cli_settings",
        "REALTIME_CLI_TEST_DB": str(connection.settings_dict["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }


def connect(url: str, frames: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("connect", url, *options),
        input=frames,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(),
        timeout=IO_TIMEOUT,
        check=False,
    )


def test_piped_frames_reach_the_server_as_the_users_and_replies_come_back(
    server: LiveServer, alice: str
) -> None:
    url = server.url + "/ws/whoami/"  # http:// is converted to ws://
    # The server answers in order, then closes on "done": nothing is timed.
    done = connect(url, "hello\n/binary 01 02 03\n//slash\ndone\n", "--user", alice)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "text alice: hello",
        "binary 030201",
        "text alice: /slash",
        "close 1000",
    ]
    assert "Connected to ws://" in done.stderr
    # The session made for the command is deleted when it ends.
    assert not Session.objects.exists()


def test_when_the_input_ends_the_replies_are_awaited_then_the_socket_closes(
    server: LiveServer, alice: str
) -> None:
    url = server.ws_url + "/ws/whoami/"
    done = connect(url, "hi", "--user", alice, "--wait", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["text alice: hi", "close 1000"]
    closing = connect(url, "/close 4000 over\nnever sent\n", "--user", alice)
    assert closing.returncode == 0, closing.stderr
    # daphne answers a client's close with 1000, whatever its code.
    assert closing.stdout.splitlines() == ["close 1000"]
    assert "Closing with 4000 over." in closing.stderr


def test_a_close_by_the_server_is_printed_with_its_code_and_fails(
    server: LiveServer, alice: str
) -> None:
    done = connect(server.ws_url + "/ws/whoami/", "bye\nnever sent\n", "--user", alice)
    assert done.returncode == 1
    # daphne sends the code without the consumer's reason.
    assert done.stdout.splitlines() == ["close 4003"]


def test_a_refused_handshake_says_the_http_status(server: LiveServer) -> None:
    done = connect(server.ws_url + "/ws/whoami/", "hello\n")
    assert done.returncode == 1
    assert "refused the WebSocket handshake of an anonymous user with HTTP 403" in (
        done.stderr
    )
    unknown = connect(server.ws_url + "/ws/whoami/", "", "--user", "nobody")
    assert unknown.returncode == 2
    assert "No user named 'nobody'" in unknown.stderr


def test_in_process_a_bad_command_line_is_explained_and_the_session_goes_on(
    server: LiveServer, alice: str
) -> None:
    out, err = io.StringIO(), io.StringIO()
    frames = io.StringIO("/quit\n\nhello\ndone\n")
    url = server.ws_url + "/ws/whoami/"
    call_command(
        "realtime",
        "connect",
        url,
        "--user",
        alice,
        stdin=frames,
        stdout=out,
        stderr=err,
    )
    assert out.getvalue().splitlines() == ["text alice: hello", "close 1000"]
    assert "Expected /binary HEX, /close [CODE [REASON]]" in err.getvalue()


def test_ctrl_c_stops_a_tail_cleanly_with_the_position_to_resume_from() -> None:
    tail = subprocess.Popen(
        command("tail", "notes.public", "--path", "/ws/notes/"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment(),
    )
    try:
        assert tail.stdout is not None
        subscribed = tail.stdout.readline()
        assert '"kind": "subscribed"' in subscribed or '"kind":"subscribed"' in (
            subscribed
        )
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=IO_TIMEOUT)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    assert "resume with --from " in err
    assert "Traceback" not in err
