"""The chat's room page in a real browser: it catches up without reloading.

Alice's page runs in Debian's Chromium (Playwright, the ``browser`` fixture
of ``tests/browser/conftest.py``) against the example project on real
server processes (``tests/e2e/example/test_chat_e2e.py``), through a TCP proxy
the test can cut: cutting it is what a network failure does to the page,
a socket that dies without a close frame. Bob talks from a socket of his
own, straight to a server, while Alice's page is cut off; the page must
then show every message exactly once, in order, without having reloaded,
or reload its messages when the server says its history is gone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import WAIT, browser
from tests.e2e.example.test_chat_e2e import (
    PASSWORD,
    Browser,
    Serve,
    ServerProcess,
    Streams,
    example_db,
    ready,
    redis_url,
    serve,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser as Chromium, Page

__all__ = ["browser", "example_db", "redis_url", "serve"]  # fixtures used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: The page's log: (id, "author: text") of each message it shows, without
#: the time it ends with.
LOG = """() => Array.from(
  document.querySelectorAll("#chat-log p[data-id]"),
  (line) => {
    const copy = line.cloneNode(true);
    copy.querySelector("time")?.remove();
    return [Number(line.dataset.id), copy.textContent];
  },
)"""


# Before the page's scripts run, turn its position {"epoch": ..., "offset": 2}
# into offset 0.
EARLIER_POSITION = """
new MutationObserver((records, observer) => {
  const since = document.getElementById("room-since");
  if (since && since.textContent.endsWith('"offset": 2}')) {
    since.textContent = since.textContent.replace('"offset": 2}', '"offset": 0}');
    window.positionRewritten = true;
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


class CuttableProxy:
    """Forward a loopback port to a server; cut every connection on demand.

    ``upstream`` may change between connections (a restarted server on
    another port). While ``refusing``, new connections are closed at once,
    as an unreachable server's would be.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refusing = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def cut(self) -> int:
        """Reset every open connection, as a failing network would; return how many."""
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            self._abort(sock)
        return len(sockets) // 2

    def close(self) -> None:
        """Stop accepting, cut everything and wait for the proxy's threads."""
        with contextlib.suppress(OSError):
            # Wakes the thread blocked in accept(), which close() alone does not.
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        for thread in self._threads:
            thread.join(timeout=10)

    @staticmethod
    def _abort(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            # Linger 0: close with a RST, no goodbye.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            host, port = self.upstream.split(":")
            try:
                if self.refusing:
                    raise ConnectionRefusedError("the proxy is refusing")
                server = socket.create_connection((host, int(port)), timeout=5)
                server.settimeout(None)
            except OSError:
                self._abort(client)
                continue
            with self._lock:
                self._open |= {client, server}
            for source, target in ((client, server), (server, client)):
                thread = threading.Thread(
                    target=self._pipe, args=(source, target), daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        # One side ended: end the pair, as a proxy that keeps no half-open
        # connections does.
        with self._lock:
            self._open -= {source, target}
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxies() -> Iterator[Callable[[ServerProcess], CuttableProxy]]:
    """Return a function that puts a :class:`CuttableProxy` before a server."""
    started: list[CuttableProxy] = []

    def start(server: ServerProcess) -> CuttableProxy:
        proxy = CuttableProxy(server.address)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


class RoomPage:
    """Alice's room page in Chromium; fails the test on uncaught page errors."""

    def __init__(self, tab: Page) -> None:
        self.tab = tab
        self.uncaught: list[str] = []
        tab.on("pageerror", lambda error: self.uncaught.append(str(error)))

    def log_in_and_open(self, url: str, room: str, username: str = "alice") -> None:
        """Log in through the login form the room sends anonymous users to."""
        self.tab.goto(f"{url}/chat/{room}/")
        self.tab.fill("#id_username", username)
        self.tab.fill("#id_password", PASSWORD)
        self.tab.click("button[type=submit]")
        self.tab.wait_for_url(f"{url}/chat/{room}/")
        self.wait_for_status("open")

    def status(self) -> str:
        return str(self.tab.text_content("#chat-status"))

    def wait_for_status(self, prefix: str) -> None:
        self.tab.wait_for_function(
            "(prefix) => document.getElementById('chat-status').value"
            ".startsWith(prefix)",
            arg=prefix,
            timeout=WAIT,
        )

    def log(self) -> list[tuple[int, str]]:
        return [(id_, text) for id_, text in self.tab.evaluate(LOG)]

    def wait_for_log(self, count: int) -> list[tuple[int, str]]:
        """Wait until the log shows ``count`` messages; return the log."""
        self.tab.wait_for_function(
            "(count) => document.querySelectorAll('#chat-log p[data-id]').length"
            " >= count",
            arg=count,
            timeout=WAIT,
        )
        return self.log()

    def mark(self) -> None:
        """Mark this document: a reload loses the mark."""
        self.tab.evaluate("() => { window.notReloaded = true; }")

    def reloaded(self) -> bool:
        return not self.tab.evaluate("() => window.notReloaded === true")

    def network_back(self) -> None:
        """Fire the browser's 'online' event, as when the network comes back.

        The page reconnects at once rather than at the end of its backoff.
        """
        self.tab.evaluate("() => window.dispatchEvent(new Event('online'))")

    def say(self, text: str) -> None:
        self.tab.fill("#chat-message-input", text)
        self.tab.click("#chat-message-submit")


@pytest.fixture
def room_page(browser: Chromium) -> Iterator[RoomPage]:
    """Yield a fresh browser tab for Alice's room page."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    page = RoomPage(tab)
    yield page
    context.close()
    assert not page.uncaught, f"Uncaught errors in the page: {page.uncaught}"


class Bob:
    """Bob, logged in on one server, talking from a socket of his own."""

    def __init__(self, server: ServerProcess, room: str) -> None:
        self.browser = Browser(server.address)
        self.browser.log_in("bob")
        self.room = room

    def say(self, *texts: str) -> list[int]:
        """Post each text in the room; return the ids of the saved messages."""
        with self.browser.open_socket(f"/ws/chat/{self.room}/") as ws:
            return [Streams(ws).post(text) for text in texts]


def expected_log(ids: list[int], lines: list[str]) -> list[tuple[int, Any]]:
    return list(zip(ids, lines, strict=True))


def new_room(server: ServerProcess) -> str:
    """Create a room of the test's own, as the superuser bob, on ``server``."""
    room = f"browser-{uuid.uuid4().hex[:12]}"
    creator = Browser(server.address)
    creator.log_in("bob")
    assert creator.create_room(room).status == 200
    return room


def test_a_page_whose_connection_is_cut_catches_up_without_reloading(
    serve: Serve,
    proxies: Callable[[ServerProcess], CuttableProxy],
    room_page: RoomPage,
) -> None:
    chat = serve("runserver")
    proxy = proxies(chat)
    room = new_room(chat)
    bob = Bob(chat, room)
    (before,) = bob.say("said before alice came")
    room_page.log_in_and_open(proxy.url, room)
    assert room_page.log() == [(before, "bob: said before alice came")]
    room_page.mark()
    (hello,) = bob.say("hello alice")
    room_page.wait_for_log(2)

    proxy.refusing = True
    assert proxy.cut() >= 1
    room_page.wait_for_status("reconnecting")
    missed = bob.say("one", "two", "three")
    proxy.refusing = False
    room_page.network_back()
    room_page.wait_for_status("open")
    log = room_page.wait_for_log(5)
    room_page.say("back, and I read everything")
    log = room_page.wait_for_log(6)

    assert not room_page.reloaded()
    ids = [before, hello, *missed]
    assert log[:5] == expected_log(
        ids,
        [
            "bob: said before alice came",
            "bob: hello alice",
            "bob: one",
            "bob: two",
            "bob: three",
        ],
    )
    assert log[5][1] == "alice: back, and I read everything"
    assert log[5][0] > missed[-1]
    # Nothing twice, and nothing was reported lost.
    assert len({id_ for id_, _ in log}) == len(log)
    assert room_page.tab.locator("#chat-log .error").count() == 0
    assert chat.terminate() == 0, chat.output


def test_the_page_shows_each_message_once_however_often_its_connection_is_cut(
    serve: Serve,
    proxies: Callable[[ServerProcess], CuttableProxy],
    room_page: RoomPage,
) -> None:
    chat = serve("runserver")
    proxy = proxies(chat)
    room = new_room(chat)
    bob = Bob(chat, room)
    room_page.log_in_and_open(proxy.url, room)
    room_page.mark()

    ids: list[int] = []
    for round_ in range(4):
        # Cut while Bob talks: some messages come live, some on resume.
        with bob.browser.open_socket(f"/ws/chat/{room}/") as ws:
            streams = Streams(ws)
            ids.append(streams.post(f"round {round_}: first"))
            proxy.cut()
            ids.append(streams.post(f"round {round_}: second"))
            ids.append(streams.post(f"round {round_}: third"))
    log = room_page.wait_for_log(len(ids))
    room_page.wait_for_status("open")

    assert not room_page.reloaded()
    assert [id_ for id_, _ in room_page.log()] == ids
    assert log[-1] == (ids[-1], "bob: round 3: third")
    assert chat.terminate() == 0, chat.output


def test_a_message_both_on_the_page_and_on_the_stream_shows_once(
    serve: Serve,
    proxies: Callable[[ServerProcess], CuttableProxy],
    room_page: RoomPage,
) -> None:
    chat = serve("runserver")
    proxy = proxies(chat)
    room = new_room(chat)
    bob = Bob(chat, room)
    said = bob.say("first", "second")

    room_page.log_in_and_open(proxy.url, room)
    # As if both messages had been saved between the view's read of the
    # stream's position and its query of the messages: the page shows them
    # and its position comes before them, so the stream replays them. (The
    # page is changed in the browser: one served by Playwright instead of
    # the server may not open sockets to the loopback address.)
    room_page.tab.add_init_script(EARLIER_POSITION)
    room_page.tab.reload()
    room_page.wait_for_status("open")
    assert room_page.tab.evaluate("() => window.positionRewritten") is True
    (live,) = bob.say("third")
    log = room_page.wait_for_log(3)

    assert log == expected_log(
        [*said, live], ["bob: first", "bob: second", "bob: third"]
    )
    assert chat.terminate() == 0, chat.output


@pytest.mark.redis
def test_with_redis_a_page_catches_up_across_a_server_restart_without_reloading(
    serve: Serve,
    proxies: Callable[[ServerProcess], CuttableProxy],
    room_page: RoomPage,
    redis_url: str,
) -> None:
    chat = serve("runserver", wait=False, REDIS_URL=redis_url)
    # Bob's server stays up while Alice's restarts.
    bob_server = serve("daphne", wait=False, REDIS_URL=redis_url, DJANGO_DEBUG="0")
    ready(chat, bob_server)
    proxy = proxies(chat)
    room = new_room(bob_server)
    bob = Bob(bob_server, room)
    room_page.log_in_and_open(proxy.url, room)
    room_page.mark()
    (hello,) = bob.say("hello alice")
    room_page.wait_for_log(1)

    assert chat.terminate() == 0, chat.output
    room_page.wait_for_status("reconnecting")
    missed = bob.say("said while", "alice's server", "was down")
    restarted = serve("runserver", REDIS_URL=redis_url)
    proxy.upstream = restarted.address
    room_page.network_back()
    room_page.wait_for_status("open")
    log = room_page.wait_for_log(4)

    assert not room_page.reloaded()
    assert log == expected_log(
        [hello, *missed],
        ["bob: hello alice", "bob: said while", "bob: alice's server", "bob: was down"],
    )
    assert room_page.tab.locator("#chat-log .error").count() == 0
    assert restarted.terminate() == 0, restarted.output


def test_a_page_whose_history_is_lost_reloads_its_messages(
    serve: Serve,
    proxies: Callable[[ServerProcess], CuttableProxy],
    room_page: RoomPage,
) -> None:
    chat = serve("runserver", EXAMPLE_REALTIME="memory")
    proxy = proxies(chat)
    room = new_room(chat)
    room_page.log_in_and_open(proxy.url, room)
    room_page.mark()
    (hello,) = Bob(chat, room).say("hello alice")
    room_page.wait_for_log(1)

    # The in-memory history goes with the process.
    proxy.refusing = True
    assert chat.terminate() == 0, chat.output
    room_page.wait_for_status("reconnecting")
    restarted = serve("runserver", EXAMPLE_REALTIME="memory")
    missed = Bob(restarted, room).say("said while", "the history was lost")
    proxy.upstream = restarted.address
    proxy.refusing = False
    room_page.network_back()
    room_page.tab.wait_for_function("() => window.notReloaded !== true", timeout=WAIT)
    room_page.wait_for_status("open")
    log = room_page.wait_for_log(3)

    # The page reloaded: the messages came from the database.
    assert log == expected_log(
        [hello, *missed],
        ["bob: hello alice", "bob: said while", "bob: the history was lost"],
    )
    (after,) = Bob(restarted, room).say("and now live again")
    assert room_page.wait_for_log(4)[3] == (after, "bob: and now live again")
    assert restarted.terminate() == 0, restarted.output
