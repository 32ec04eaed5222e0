"""The example chat on real servers: what the README promises, end to end.

Each test starts server processes from the repository root on free loopback
ports, on a freshly migrated SQLite file with two users made by
``manage.py createsuperuser``, and talks to them with real HTTP and
WebSocket clients: a user logs in through the login form, then opens sockets
with the session cookie and the page's origin, as a browser would.
``manage.py runserver`` is what the README tells users to run; daphne and
uvicorn are the production servers.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[3]
APPLICATION = "example_project.asgi:application"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
IO_TIMEOUT = 10.0

USERS = ("alice", "bob")
PASSWORD = "e2e-Password-not-common-42"
#: A user who is not staff: she may talk, not create rooms.
MEMBER = "carol"


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


# Every process of a test run shares it, as the servers of one site do, so
# that a session made by one is valid on another, DEBUG on or off.
SECRET_KEY = "e2e-secret-key-of-the-test-run-" + uuid.uuid4().hex

# The example project's settings read these; a test sets what it needs.
SETTINGS_ENVIRONMENT = {
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "EXAMPLE_REALTIME",
    "EXAMPLE_REALTIME_PATH",
    "METRICS_ALLOWED_NETWORKS",
    "REDIS_LAYER_BACKEND",
    "REDIS_URL",
}


def example_env(db_path: Path, **overrides: str) -> dict[str, str]:
    """Return the environment of a process of the example project.

    It has a secret key of the test run's own, so that ``DJANGO_DEBUG="0"``
    starts; pass ``DJANGO_SECRET_KEY=""`` to go without. Its channel layer
    and streams are in the SQLite file ``realtime.sqlite3`` beside
    ``db_path`` (the example's default), so that the processes of one
    database meet and no others; pass ``EXAMPLE_REALTIME_PATH`` for another
    file, ``EXAMPLE_REALTIME="memory"`` for the in-memory layer and store.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SETTINGS_ENVIRONMENT
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        DJANGO_SECRET_KEY=SECRET_KEY,
        EXAMPLE_DB_PATH=str(db_path),
        EXAMPLE_REALTIME_PATH=str(db_path.with_name("realtime.sqlite3")),
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class ServerProcess:
    """One server process of the example project, its output kept in a file."""

    def __init__(self, server: str, env: dict[str, str], log_path: Path) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        argv = [arg.format(port=port) for arg in SERVER_COMMANDS[server]]
        self.spawn(argv, env, log_path)

    def spawn(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        """Start ``python argv`` from the repository root, in a session of its own."""
        self.argv = [sys.executable, *argv]
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

    def wait_until_ready(self) -> None:
        """Return once the process serves (here: listens); fail if it ends."""
        self.wait_until_listening()

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


def manage(db_path: Path, *args: str, **env: str) -> None:
    """Run ``manage.py`` with ``args`` on ``db_path``; fail if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=example_env(db_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {args}: {result.stdout}{result.stderr}"


def build_example_db(db_path: Path) -> None:
    """Set up ``db_path`` as the README says: migrate, createsuperuser.

    Its users are the superusers alice and bob, and carol, who is not staff.
    """
    manage(db_path, "migrate", "--noinput")
    assert db_path.exists()
    for username in USERS:
        manage(
            db_path,
            "createsuperuser",
            "--noinput",
            DJANGO_SUPERUSER_USERNAME=username,
            DJANGO_SUPERUSER_EMAIL=f"{username}@example.com",
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )
    manage(
        db_path,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({MEMBER!r}, password={PASSWORD!r})",
    )


@pytest.fixture(scope="module")
def example_db(
    example_db_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Return a fresh copy of the README's database (:func:`build_example_db`).

    The test run builds it once (``example_db_template`` in tests/conftest.py);
    each module gets a copy of its own to change.
    """
    db_path = tmp_path_factory.mktemp("example") / "db.sqlite3"
    shutil.copyfile(example_db_template, db_path)
    return db_path


Serve = Callable[..., ServerProcess]


def ready(*processes: ServerProcess) -> None:
    """Wait until each of ``processes``, started together, is ready."""
    for process in processes:
        process.wait_until_ready()


@pytest.fixture
def serve(example_db: Path, tmp_path: Path) -> Iterator[Serve]:
    """Return a function that starts a server and returns it once it listens.

    ``serve("uvicorn", DJANGO_DEBUG="0")`` starts uvicorn with that extra
    environment. With ``wait=False`` it returns at once: start several
    processes that way, then :func:`ready` them, and they start together.
    Every process started is killed at teardown, whatever the test did.
    """
    started: list[ServerProcess] = []

    def start(server: str, wait: bool = True, **env: str) -> ServerProcess:
        log_path = tmp_path / f"{server}-{len(started)}.log"
        # The servers of one test share a file, those of another test not.
        env.setdefault("EXAMPLE_REALTIME_PATH", str(tmp_path / "realtime.sqlite3"))
        process = ServerProcess(server, example_env(example_db, **env), log_path)
        started.append(process)
        if wait:
            process.wait_until_ready()
        return process

    yield start
    for process in started:
        process.kill()


class Browser:
    """One user's browser on one server: a cookie jar, pages, sockets."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.origin = f"http://{address}"
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies)
        )

    def request(self, path: str, form: dict[str, str] | None = None) -> Page:
        """GET ``path``, or POST ``form`` to it, following redirects."""
        data = None if form is None else urllib.parse.urlencode(form).encode()
        url = self.origin + path
        try:
            with self.opener.open(url, data, timeout=IO_TIMEOUT) as response:
                return Page(response.status, response.url, response.read().decode())
        except urllib.error.HTTPError as error:
            return Page(error.code, error.url, error.read().decode())

    def submit(self, path: str, form: dict[str, str], page: Page) -> Page:
        """POST ``form`` to ``path`` with the CSRF token of ``page``'s form."""
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, f"no CSRF token in {page.url}:\n{page.text}"
        return self.request(path, {**form, "csrfmiddlewaretoken": match[1]})

    def log_in(self, username: str) -> Page:
        """Log in through the login form; return the page it leads to."""
        form = self.request("/accounts/login/")
        assert form.status == 200, form
        page = self.submit(
            "/accounts/login/", {"username": username, "password": PASSWORD}, form
        )
        assert page.status == 200, page
        assert page.url == f"{self.origin}/chat/", page.url
        assert f'<strong id="user-name">{username}</strong>' in page.text
        return page

    def create_room(self, room: str) -> Page:
        """Create ``room`` with the index's form; return the page it leads to."""
        index = self.request("/chat/")
        assert index.status == 200, index
        return self.submit("/chat/", {"name": room}, index)

    def on(self, address: str) -> Browser:
        """Return this browser on the server at ``address``: the same cookies."""
        other = Browser(address)
        other.cookies = self.cookies
        other.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies)
        )
        return other

    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.cookies)

    def open_socket(self, path: str, origin: str | None = None) -> ClientConnection:
        """Open a socket with this browser's cookies, from its page's origin."""
        return connect(
            f"ws://{self.address}{path}",
            origin=origin or self.origin,
            additional_headers={"Cookie": self.cookie_header()},
            open_timeout=IO_TIMEOUT,
            close_timeout=IO_TIMEOUT,
        )


class Page:
    """An HTTP answer: status, final URL (after redirects), body."""

    def __init__(self, status: int, url: str, text: str) -> None:
        self.status = status
        self.url = url
        self.text = text

    def __repr__(self) -> str:
        return f"<Page {self.status} {self.url}: {self.text[:500]!r}>"


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def heard(client: ClientConnection) -> Any:
    return json.loads(client.recv(timeout=IO_TIMEOUT))


def script_data(page: Page, element_id: str) -> Any:
    """Return the JSON of ``page``'s ``json_script`` element ``element_id``."""
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>',
        page.text,
    )
    assert match, f"no #{element_id} in {page!r}"
    return json.loads(match[1])


class StreamError(Exception):
    """The server answered a frame with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.code = frame.get("code")
        self.frame = frame


class Streams:
    """The stream protocol over a real socket, as the page's realtime.js speaks it.

    Frames are numbered; publications that arrive while an answer is awaited
    are kept, per stream, in :attr:`received`, and checked to follow each
    other with no gap.
    """

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.received: dict[str, list[Any]] = {}
        self.positions: dict[str, dict[str, Any]] = {}
        self.next_id = 0

    def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send a frame; return its answer.

        Raises:
            StreamError: the answer is an ``error`` frame.
        """
        self.next_id += 1
        frame_id = self.next_id
        self.socket.send(json.dumps({"kind": kind, "id": frame_id, **fields}))
        while True:
            frame: dict[str, Any] = heard(self.socket)
            if frame.get("kind") == "publication" or frame.get("id") != frame_id:
                self._take(frame)
            elif frame["kind"] == "error":
                raise StreamError(frame)
            else:
                return frame

    def subscribe(
        self, stream: str, since: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Subscribe to ``stream`` (from ``since``); return ``subscribed``."""
        fields: dict[str, Any] = {"stream": stream}
        if since is not None:
            fields["since"] = since
        frame = self.call("subscribe", **fields)
        self.received.setdefault(stream, [])
        offset = frame["offset"] - frame["replayed"]
        if since is not None and not frame["recovered"]:
            offset = frame["offset"]
        self.positions[stream] = {"epoch": frame["epoch"], "offset": offset}
        return frame

    def request(self, request_type: str, data: Any) -> Any:
        """Send a request; return the reply's data."""
        return self.call("request", type=request_type, data=data)["data"]

    def post(self, text: str) -> int:
        """Post ``text`` in the socket's room; return the message's id."""
        reply = self.request("post", {"text": text})
        assert isinstance(reply["id"], int), reply
        return reply["id"]

    def wait_for(self, stream: str, count: int) -> list[Any]:
        """Read until ``stream`` has ``count`` publications; return them all."""
        while len(self.received.get(stream, ())) < count:
            self._take(heard(self.socket))
        return self.received[stream]

    def _take(self, frame: dict[str, Any]) -> None:
        assert frame.get("kind") == "publication", f"unexpected frame {frame!r}"
        stream = frame["stream"]
        last = self.positions[stream]
        assert (frame["epoch"], frame["offset"]) == (
            last["epoch"],
            last["offset"] + 1,
        ), f"expected the publication after {last} of {stream}, got {frame}"
        self.received[stream].append(frame["data"])
        self.positions[stream] = {"epoch": frame["epoch"], "offset": frame["offset"]}


def texts(publications: list[Any]) -> list[tuple[str, str]]:
    """Return the (author, text) of each message publication."""
    return [(p["author"], p["text"]) for p in publications]


def assert_refused(browser: Browser, path: str, origin: str | None = None) -> None:
    """Check that the handshake is refused with HTTP 403."""
    with pytest.raises(InvalidStatus) as refused:
        browser.open_socket(path, origin).close()
    assert refused.value.response.status_code == 403, (path, origin)


@pytest.mark.parametrize(
    ("server", "env"),
    [
        ("runserver", {}),
        ("daphne", {"DJANGO_DEBUG": "0"}),
        ("uvicorn", {"DJANGO_DEBUG": "0"}),
    ],
    ids=["runserver", "daphne", "uvicorn"],
)
def test_two_users_log_in_and_chat_in_a_room_then_the_server_stops_on_sigterm(
    serve: Serve, server: str, env: dict[str, str]
) -> None:
    chat = serve(server, **env)
    # A room per server: the database is shared by the module's tests.
    room = f"lobby-{server}"
    stream = f"chat.{room}"
    path = f"/ws/chat/{room}/"
    alice, bob = Browser(chat.address), Browser(chat.address)

    anonymous = Browser(chat.address).request(f"/chat/{room}/")
    assert anonymous.status == 200
    assert anonymous.url.endswith(f"/accounts/login/?next=/chat/{room}/")
    assert "python manage.py createsuperuser" in anonymous.text

    alice.log_in("alice")
    bob.log_in("bob")
    page = alice.create_room(room)
    assert page.status == 200
    assert page.url == f"{alice.origin}/chat/{room}/"
    assert f"<h1>Room {room}</h1>" in page.text
    assert '<strong id="user-name">alice</strong>' in page.text
    assert script_data(page, "room-name") == room
    since = script_data(page, "room-since")
    assert since["offset"] == 0
    assert "/static/chat/room.js" in page.text
    assert "/static/django_realtime/realtime.js" in page.text

    with alice.open_socket(path) as alice_ws, bob.open_socket(path) as bob_ws:
        alice_streams, bob_streams = Streams(alice_ws), Streams(bob_ws)
        # Alice follows from her page's position, Bob from now.
        assert alice_streams.subscribe(stream, since)["recovered"]
        bob_streams.subscribe(stream)
        first = alice_streams.post("hello bob")
        (from_alice,) = bob_streams.wait_for(stream, 1)
        assert from_alice == {
            "type": "message",
            "id": first,
            "author": "alice",
            "text": "hello bob",
            "created": from_alice["created"],
        }
        # When it was saved, with its UTC offset: the time the page shows.
        assert datetime.fromisoformat(from_alice["created"]).tzinfo is not None
        second = bob_streams.post("hello <alice>")
        assert second > first
        heard_by_alice = alice_streams.wait_for(stream, 2)
        assert texts(heard_by_alice) == [
            ("alice", "hello bob"),
            ("bob", "hello <alice>"),
        ]
        assert bob_streams.wait_for(stream, 2) == heard_by_alice
        with pytest.raises(StreamError) as refused:
            bob_streams.post("")
        assert refused.value.code == "invalid"
        # A socket of this room may follow this room alone.
        with pytest.raises(StreamError) as forbidden:
            bob_streams.subscribe("chat.elsewhere")
        assert forbidden.value.code == "forbidden"

    # The messages were saved: a newcomer's page shows them, oldest first,
    # with when they were saved and the position after them; Bob's own
    # messages are marked as his.
    page = bob.request(f"/chat/{room}/")
    assert (
        f'<p data-id="{first}"><span class="author">alice</span>: hello bob'
        '<time datetime="'
    ) in page.text
    assert (
        f'<p data-id="{second}" class="mine"><span class="author">bob</span>: '
        'hello &lt;alice&gt;<time datetime="'
    ) in page.text
    assert page.text.index("hello bob") < page.text.index("hello &lt;alice&gt;")
    assert script_data(page, "room-since") == {"epoch": since["epoch"], "offset": 2}

    # Without a login, from another site, or to a path of no room: 403.
    assert_refused(Browser(chat.address), path)
    assert_refused(alice, path, origin="http://evil.example")
    assert_refused(alice, "/ws/nowhere/")
    assert_refused(alice, "/ws/chat/semi;colon/")
    # After logging out, the browser's cookie opens no socket.
    logged_out = bob.submit("/accounts/logout/", {}, page)
    assert logged_out.url == f"{bob.origin}/accounts/login/", logged_out
    assert_refused(bob, path)

    assert chat.terminate() == EXIT_ON_SIGTERM[server], chat.output


def test_rooms_exist_before_anyone_talks_and_only_staff_create_them(
    serve: Serve,
) -> None:
    chat = serve("runserver")
    room = f"new-{uuid.uuid4().hex[:8]}"
    alice, carol = Browser(chat.address), Browser(chat.address)
    alice.log_in("alice")
    carol.log_in(MEMBER)

    # A room nobody created: no page, no socket, and a member cannot make one.
    index = carol.request(f"/chat/?room={room}")
    assert index.status == 404
    assert f"There is no room &#x27;{room}&#x27;." in index.text
    assert "Rooms are created by staff." in index.text
    assert 'name="name"' not in index.text
    assert carol.request(f"/chat/{room}/").status == 404
    assert_refused(carol, f"/ws/chat/{room}/")
    refused = carol.submit("/chat/", {"name": room}, index)
    assert refused.status == 403
    assert "Creating rooms needs the chat.add_room permission." in refused.text
    assert carol.request(f"/chat/{room}/").status == 404

    # A superuser is offered to create it, and does.
    offer = alice.request(f"/chat/?room={room}")
    assert offer.status == 404
    assert f'id="new-room-name" name="name" type="text" value="{room}"' in offer.text
    bad = alice.submit("/chat/", {"name": "two words"}, offer)
    assert bad.status == 400
    assert "A room name is 1 to 50 letters" in bad.text
    created = alice.create_room(room)
    assert created.url == f"{alice.origin}/chat/{room}/"
    assert f"<h1>Room {room}</h1>" in created.text

    # Now everyone finds it, and may talk in it.
    found = carol.request(f"/chat/?room={room}")
    assert (found.status, found.url) == (200, f"{carol.origin}/chat/{room}/")
    assert f'<a href="/chat/{room}/">{room}</a>' in carol.request("/chat/").text
    with carol.open_socket(f"/ws/chat/{room}/") as socket:
        streams = Streams(socket)
        streams.subscribe(f"chat.{room}")
        streams.post("first!")
        assert texts(streams.wait_for(f"chat.{room}", 1)) == [(MEMBER, "first!")]
    # Creating it again goes to it.
    again = alice.create_room(room)
    assert (again.status, again.url) == (200, f"{alice.origin}/chat/{room}/")
    assert "first!" in again.text
    assert chat.terminate() == 0, chat.output


def test_runserver_announces_itself_and_serves_the_page_scripts(serve: Serve) -> None:
    chat = serve("runserver")
    address = chat.address

    status, script = http_get(f"http://{address}/static/chat/room.js")
    client_status, client = http_get(
        f"http://{address}/static/django_realtime/realtime.js"
    )

    assert status == 200
    assert 'from "django_realtime"' in script
    assert "/ws/chat/" in script
    assert client_status == 200
    assert "export function connect(" in client
    assert chat.terminate() == 0, chat.output
    output = chat.output
    assert f"Starting ASGI/Daphne development server at http://{address}/" in output
    assert "using settings 'example_project.settings'" in output
    assert "HTTP GET /static/chat/room.js 200" in output


def test_after_a_restart_on_the_in_memory_store_a_page_is_told_to_reload(
    serve: Serve,
) -> None:
    chat = serve("runserver", EXAMPLE_REALTIME="memory")
    room = f"restart-{uuid.uuid4().hex[:8]}"
    alice = Browser(chat.address)
    alice.log_in("alice")
    since = script_data(alice.create_room(room), "room-since")
    with alice.open_socket(f"/ws/chat/{room}/") as socket:
        Streams(socket).subscribe(f"chat.{room}", since)
        Streams(socket).post("before the restart")
    assert chat.terminate() == 0, chat.output

    again = serve("runserver", EXAMPLE_REALTIME="memory")
    alice = Browser(again.address)
    alice.log_in("alice")
    with alice.open_socket(f"/ws/chat/{room}/") as socket:
        resumed = Streams(socket).subscribe(
            f"chat.{room}", {"epoch": since["epoch"], "offset": 1}
        )

    # The history went with the process; the messages are in the database.
    assert (resumed["recovered"], resumed["reason"]) == (False, "epoch_changed")
    page = alice.request(f"/chat/{room}/")
    assert "before the restart" in page.text
    assert again.terminate() == 0, again.output


def test_after_a_restart_on_the_default_sqlite_file_a_page_resumes(
    serve: Serve,
) -> None:
    chat = serve("runserver")
    room = f"restart-{uuid.uuid4().hex[:8]}"
    alice = Browser(chat.address)
    alice.log_in("alice")
    since = script_data(alice.create_room(room), "room-since")
    with alice.open_socket(f"/ws/chat/{room}/") as socket:
        Streams(socket).subscribe(f"chat.{room}", since)
        Streams(socket).post("before the restart")
    assert chat.terminate() == 0, chat.output

    again = serve("runserver")
    alice = Browser(again.address)
    alice.log_in("alice")
    with alice.open_socket(f"/ws/chat/{room}/") as socket:
        streams = Streams(socket)
        resumed = streams.subscribe(f"chat.{room}", since)
        (missed,) = streams.wait_for(f"chat.{room}", 1)

    # The history is in the file, with the stream's epoch and offset.
    assert (resumed["recovered"], resumed["replayed"]) == (True, 1)
    assert (missed["author"], missed["text"]) == ("alice", "before the restart")
    assert again.terminate() == 0, again.output


def test_publish_from_manage_py_shell_reaches_a_page_on_the_defaults(
    serve: Serve, example_db: Path, tmp_path: Path
) -> None:
    chat = serve("runserver")
    room = f"shell-{uuid.uuid4().hex[:8]}"
    alice = Browser(chat.address)
    alice.log_in("alice")
    alice.create_room(room)
    with alice.open_socket(f"/ws/chat/{room}/") as socket:
        streams = Streams(socket)
        streams.subscribe(f"chat.{room}")
        # As a user would, in another terminal: the same settings, no Redis.
        manage(
            example_db,
            "shell",
            "-c",
            "from django_realtime.streams import publish; "
            f"publish('chat.{room}', {{'type': 'message', 'id': 0, "
            "'author': 'shell', 'text': 'hello'})",
            EXAMPLE_REALTIME_PATH=str(tmp_path / "realtime.sqlite3"),
        )
        (published,) = streams.wait_for(f"chat.{room}", 1)

    assert published == {"type": "message", "id": 0, "author": "shell", "text": "hello"}
    assert chat.terminate() == 0, chat.output


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
def test_rooms_span_server_processes_and_their_restarts_through_redis(
    serve: Serve, redis_url: str
) -> None:
    daphne = serve("daphne", wait=False, REDIS_URL=redis_url, DJANGO_DEBUG="0")
    uvicorn = serve("uvicorn", wait=False, REDIS_URL=redis_url, DJANGO_DEBUG="0")
    ready(daphne, uvicorn)
    alice, bob = Browser(daphne.address), Browser(uvicorn.address)
    alice.log_in("alice")
    bob.log_in("bob")
    # A room of its own, so that concurrent runs on the same Redis never meet.
    room = f"e2e-{uuid.uuid4().hex}"
    alice.create_room(room)
    stream, path = f"chat.{room}", f"/ws/chat/{room}/"
    # Bob's page comes from daphne, his socket goes to uvicorn: the position
    # is the same in every process.
    bob_since = script_data(
        bob.on(daphne.address).request(f"/chat/{room}/"), "room-since"
    )

    with alice.open_socket(path) as alice_ws:
        alice_streams = Streams(alice_ws)
        alice_streams.subscribe(stream)
        with bob.open_socket(path) as bob_ws:
            bob_streams = Streams(bob_ws)
            assert bob_streams.subscribe(stream, bob_since)["recovered"]
            alice_streams.post("across processes")
            (from_alice,) = bob_streams.wait_for(stream, 1)
            assert (from_alice["author"], from_alice["text"]) == (
                "alice",
                "across processes",
            )
            bob_streams.post("and back")
            assert texts(alice_streams.wait_for(stream, 2)) == [
                ("alice", "across processes"),
                ("bob", "and back"),
            ]
            assert bob_streams.wait_for(stream, 2)[1]["text"] == "and back"
            bob_position = bob_streams.positions[stream]

        # Bob's server stops; what is said meanwhile waits in Redis.
        assert uvicorn.terminate() == EXIT_ON_SIGTERM["uvicorn"], uvicorn.output
        alice_streams.post("while uvicorn was down")
        alice_streams.post("and still")
        uvicorn = serve("uvicorn", REDIS_URL=redis_url, DJANGO_DEBUG="0")
        bob = bob.on(uvicorn.address)
        with bob.open_socket(path) as bob_ws:
            bob_streams = Streams(bob_ws)
            resumed = bob_streams.subscribe(stream, bob_position)
            assert (resumed["recovered"], resumed["replayed"]) == (True, 2)
            assert texts(bob_streams.wait_for(stream, 2)) == [
                ("alice", "while uvicorn was down"),
                ("alice", "and still"),
            ]

    assert daphne.terminate() == EXIT_ON_SIGTERM["daphne"], daphne.output
    assert uvicorn.terminate() == EXIT_ON_SIGTERM["uvicorn"], uvicorn.output
