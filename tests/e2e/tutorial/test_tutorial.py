"""docs/tutorial.rst, followed literally, on real servers.

Each step's test makes a project in a temporary directory as the page says
(``django-admin startproject mysite``, ``python manage.py startapp chat``,
with the interpreter running the tests), applies the listings of the steps
up to its own the way the page shows them, runs the page's commands, starts
``python manage.py runserver`` and checks from outside, with real HTTP and
WebSocket clients, what the step promises.

The listings are read from the page itself: a ``literalinclude`` of a whole
file under ``docs/tutorial/stepN/`` whose caption is a path replaces (or
creates) that file of the project; a caption ending in ``(at the end)`` is
appended to the file. So the page, the files and this test cannot drift
apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

DOCS = Path(__file__).resolve().parents[3] / "docs"
PAGE = DOCS / "tutorial.rst"
FILES = DOCS / "tutorial"
APPEND = " (at the end)"
STEPS = (1, 2, 3, 4)

STARTUP_TIMEOUT = 30.0
IO_TIMEOUT = 10.0
PASSWORD = "tutorial-Password-42"

# What the page has the reader run after writing each step's files, besides
# runserver (the user commands are in the tests that need users).
COMMANDS_AFTER_FILES: dict[int, list[list[str]]] = {
    1: [["migrate"]],
    2: [],
    3: [],
    4: [["makemigrations", "chat"], ["migrate"]],
}

_INCLUDE = re.compile(
    r"^\.\. literalinclude:: (?P<source>\S+)\n(?P<options>(?:   :[\w-]+:.*\n)*)",
    re.MULTILINE,
)
# Options that show part of a file: such a listing quotes, it does not apply.
_PARTIAL = {"lines", "start-at", "start-after", "end-at", "end-before", "pyobject"}


def listings() -> list[tuple[int, Path, str, bool]]:
    """Return the page's applied listings: (step, source, destination, append)."""
    found = []
    for match in _INCLUDE.finditer(PAGE.read_text(encoding="utf-8")):
        source = (DOCS / match["source"]).resolve()
        options = dict(
            re.findall(r"^   :([\w-]+):[ ]?(.*)$", match["options"], re.MULTILINE)
        )
        if FILES not in source.parents or options.keys() & _PARTIAL:
            continue
        relative = source.relative_to(FILES)
        step = int(relative.parts[0].removeprefix("step"))
        caption = options["caption"]
        destination = caption.removesuffix(APPEND)
        assert destination == str(Path(*relative.parts[1:])), (
            f"The listing of {relative} is captioned {caption!r}: the caption "
            "must be the file's path in the project."
        )
        found.append((step, source, destination, caption.endswith(APPEND)))
    return found


def page_command(prefix: str) -> list[str]:
    """Return the page's one command line that starts with ``prefix``, split."""
    lines = [
        line.strip()
        for line in PAGE.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith(prefix)
    ]
    assert len(lines) == 1, f"Expected one {prefix!r} line in the page, got {lines}"
    return shlex.split(lines[0])


def test_every_file_of_docs_tutorial_is_shown_whole_once() -> None:
    shown = [source for _, source, _, _ in listings()]
    files = sorted(
        path
        for path in FILES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert sorted(shown) == files
    assert {step for step, _, _, _ in listings()} == set(STEPS)


def test_the_page_gives_the_commands_this_test_runs() -> None:
    text = PAGE.read_text(encoding="utf-8")
    commands = [
        "django-admin startproject mysite",
        "python manage.py startapp chat",
        "python manage.py runserver",
        "python manage.py createsuperuser",
    ]
    for after in COMMANDS_AFTER_FILES.values():
        commands += [shlex.join(["python", "manage.py", *args]) for args in after]
    for command in commands:
        assert command in text, command


# The tutorial's project ------------------------------------------------------


def environment() -> dict[str, str]:
    """Return the environment of the project's processes: no test settings."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(cwd: Path, *args: str, **env: str) -> str:
    """Run ``python args`` in ``cwd``; return its output, fail if it fails."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**environment(), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def build(root: Path, last_step: int) -> Path:
    """Make the tutorial's project in ``root`` as it is at the end of a step."""
    run(root, "-m", "django", "startproject", "mysite")
    project = root / "mysite"
    run(project, "manage.py", "startapp", "chat")
    for step in range(1, last_step + 1):
        for listed_step, source, destination, append in listings():
            if listed_step != step:
                continue
            target = project / destination
            target.parent.mkdir(parents=True, exist_ok=True)
            text = source.read_text(encoding="utf-8")
            if append:
                text = target.read_text(encoding="utf-8") + "\n" + text
            target.write_text(text, encoding="utf-8")
        for args in COMMANDS_AFTER_FILES[step]:
            run(project, "manage.py", *args)
    return project


def create_user(project: Path, username: str) -> None:
    """Create a user as the page says, with createsuperuser (without prompts)."""
    run(
        project,
        "manage.py",
        "createsuperuser",
        "--noinput",
        DJANGO_SUPERUSER_USERNAME=username,
        DJANGO_SUPERUSER_EMAIL=f"{username}@example.com",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def runserver(project: Path, port: int | None = None) -> Iterator[str]:
    """Run ``manage.py runserver`` on ``port`` (or a free one); yield its address."""
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    log_path = project / "runserver.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", address, "--noreload"],
            cwd=project,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            output = log_path.read_text(errors="replace")
            assert process.poll() is None, f"runserver exited:\n{output}"
            assert time.monotonic() < deadline, f"runserver is not up:\n{output}"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            # Another process's port cannot be awaited; poll it briefly.
            time.sleep(0.05)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Browser:
    """One user's browser: a cookie jar, pages, and sockets from its pages."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.origin = f"http://{address}"
        self.http = requests.Session()

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.origin + path, timeout=IO_TIMEOUT)

    def log_in(self, username: str, next_path: str) -> requests.Response:
        """Log in through the login page; return the page it leads to."""
        form = self.get(f"/accounts/login/?next={next_path}")
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, form.text
        page = self.http.post(
            form.url,
            data={
                "csrfmiddlewaretoken": token[1],
                "username": username,
                "password": PASSWORD,
                "next": next_path,
            },
            timeout=IO_TIMEOUT,
        )
        assert page.url == self.origin + next_path, page.text
        return page

    def socket(self, path: str) -> ClientConnection:
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        return connect(
            f"ws://{self.address}{path}",
            origin=self.origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": cookies},
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
        )


def receive_json(sock: ClientConnection) -> Any:
    return json.loads(sock.recv(timeout=IO_TIMEOUT))


def close_code(sock: ClientConnection) -> int | None:
    """Wait for the server to close ``sock``; return its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        sock.recv(timeout=IO_TIMEOUT)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


# The steps ----------------------------------------------------------------------


def test_step_1_echoes_what_a_client_sends(tmp_path: Path) -> None:
    project = build(tmp_path, 1)
    with runserver(project) as address, connect(f"ws://{address}/ws/echo/") as sock:
        sock.send("hello")
        assert sock.recv(timeout=IO_TIMEOUT) == "hello"
        sock.send(b"\x00bytes")
        assert sock.recv(timeout=IO_TIMEOUT) == b"\x00bytes"


def test_step_2_everyone_in_a_room_sees_each_message(tmp_path: Path) -> None:
    project = build(tmp_path, 2)
    with runserver(project) as address:
        page = requests.get(f"http://{address}/chat/lobby/", timeout=IO_TIMEOUT)
        assert page.status_code == 200
        assert '<script id="room-name" type="application/json">"lobby"' in page.text

        url = f"ws://{address}/ws/chat"
        with (
            connect(f"{url}/lobby/") as alice,
            connect(f"{url}/lobby/") as bob,
            connect(f"{url}/kitchen/") as carol,
        ):
            alice.send(json.dumps({"text": "hi, lobby"}))
            assert receive_json(bob) == {"text": "hi, lobby"}
            assert receive_json(alice) == {"text": "hi, lobby"}
            # Another room hears nothing of it: its first message is its own.
            carol.send(json.dumps({"text": "hi, kitchen"}))
            assert receive_json(carol) == {"text": "hi, kitchen"}


def test_step_3_the_room_knows_who_talks_and_refuses_anonymous_users(
    tmp_path: Path,
) -> None:
    project = build(tmp_path, 3)
    create_user(project, "alice")
    create_user(project, "bob")
    with runserver(project) as address:
        anonymous = Browser(address)
        page = anonymous.get("/chat/lobby/")
        assert page.url == f"{anonymous.origin}/accounts/login/?next=/chat/lobby/"
        with anonymous.socket("/ws/chat/lobby/") as sock:
            assert close_code(sock) == 4003
        # Not from a page of the site (no Origin): refused at the handshake.
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{address}/ws/chat/lobby/", open_timeout=IO_TIMEOUT)
        assert refused.value.response.status_code == 403

        alice, bob = Browser(address), Browser(address)
        assert "You are alice." in alice.log_in("alice", "/chat/lobby/").text
        bob.log_in("bob", "/chat/lobby/")
        with (
            alice.socket("/ws/chat/lobby/") as sock,
            bob.socket("/ws/chat/lobby/") as other,
        ):
            # What the page says about its author does not count.
            sock.send(json.dumps({"text": "hi", "author": "mallory"}))
            assert receive_json(other) == {"author": "alice", "text": "hi"}


@pytest.fixture(scope="module")
def step_4_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the project at the end of step 4, with the user alice."""
    project = build(tmp_path_factory.mktemp("step4"), 4)
    create_user(project, "alice")
    return project


@pytest.fixture
def step_4(step_4_built: Path, tmp_path: Path) -> Path:
    """Return a copy of :func:`step_4_built` of the test's own."""
    return Path(shutil.copytree(step_4_built, tmp_path / "mysite"))


def test_step_4_messages_are_kept_and_survive_reconnects(step_4: Path) -> None:
    project = step_4
    shell_command = page_command("python manage.py shell -c ")
    assert shell_command[:2] == ["python", "manage.py"]
    with runserver(project) as address:
        alice = Browser(address)
        alice.log_in("alice", "/chat/lobby/")
        with Browser(address).socket("/ws/chat/lobby/") as anonymous:
            assert close_code(anonymous) == 4003

        with alice.socket("/ws/chat/lobby/") as sock:
            subscribe = {"kind": "subscribe", "id": 1, "stream": "chat.lobby"}
            sock.send(json.dumps(subscribe))
            subscribed = receive_json(sock)
            assert subscribed["kind"] == "subscribed", subscribed
            sock.send(
                json.dumps({"kind": "subscribe", "id": 2, "stream": "chat.kitchen"})
            )
            assert receive_json(sock)["code"] == "forbidden"

            post = {"kind": "request", "id": 3, "type": "post", "data": {"text": "hi"}}
            sock.send(json.dumps(post))
            frames = [receive_json(sock), receive_json(sock)]
            (reply,) = [frame for frame in frames if frame["kind"] == "reply"]
            (heard,) = [frame for frame in frames if frame["kind"] == "publication"]
            assert heard["data"] == {
                "type": "message",
                "id": reply["data"]["id"],
                "author": "alice",
                "text": "hi",
            }

            run(project, *shell_command[1:])
            from_shell = receive_json(sock)
            assert from_shell["kind"] == "publication", from_shell
            assert from_shell["offset"] == heard["offset"] + 1
            assert from_shell["data"]["author"] == "alice"

        # Away from the room while the shell says it again: the resume
        # replays it.
        run(project, *shell_command[1:])
        since = {"epoch": from_shell["epoch"], "offset": from_shell["offset"]}
        with alice.socket("/ws/chat/lobby/") as sock:
            resume = {"kind": "subscribe", "id": 1, "stream": "chat.lobby"}
            sock.send(json.dumps({**resume, "since": since}))
            subscribed = receive_json(sock)
            assert subscribed["recovered"] is True, subscribed
            assert subscribed["replayed"] == 1
            missed = receive_json(sock)
            assert missed["offset"] == since["offset"] + 1
            assert missed["data"]["text"] == from_shell["data"]["text"]

        # The messages are rows: the room's page shows them, and the
        # position to follow the stream from.
        page = alice.get("/chat/lobby/").text
        assert page.count(f"alice: {from_shell['data']['text']}</li>") == 2
        assert "alice: hi</li>" in page
        assert f'"offset": {missed["offset"]}' in page


def chromium_path() -> str:
    """Return the system's Chromium; skip without it (fail under ``CI=true``)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "Chromium is not installed: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required under CI=true)")
        pytest.skip(reason)
    return path


def state_is(page: Page, state: str) -> None:
    page.wait_for_function(
        f"document.getElementById('state').value === {state!r}",
        timeout=IO_TIMEOUT * 1000,
    )


@pytest.mark.browser
def test_step_4_page_catches_up_after_a_restart_without_reloading(
    step_4: Path,
) -> None:
    """Do what the page's "Try it" says, in Chromium."""
    from playwright.sync_api import sync_playwright

    project = step_4
    shell_command = page_command("python manage.py shell -c ")
    port = free_port()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        with runserver(project, port) as address:
            page.goto(f"http://{address}/chat/lobby/")
            page.fill("#id_username", "alice")
            page.fill("#id_password", PASSWORD)
            page.click("button")
            state_is(page, "open")
            page.fill("#text", "typed in the page")
            page.press("#text", "Enter")
            page.wait_for_selector("li:has-text('alice: typed in the page')")
            page.reload()
            state_is(page, "open")
            assert page.inner_text("#log") == "alice: typed in the page"
            page.evaluate("window.notReloaded = true")
        state_is(page, "reconnecting")
        run(project, *shell_command[1:])
        with runserver(project, port):
            page.wait_for_selector("li:has-text('alice: Hello from the shell')")
            state_is(page, "open")
            assert page.evaluate("window.notReloaded") is True
        browser.close()
    assert errors == []
