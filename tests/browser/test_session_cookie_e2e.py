"""realtime.js takes the session cookie that a login over the socket hands over.

The server is daphne, which sends no headers with ``websocket.accept``, so
even a login before the accept reaches the browser as a session frame. The
users and sessions live in the test database, shared with the server.

Playwright's sync API keeps an event loop running in the test's thread, in
which Django refuses database queries: the tests make them in another
thread, and the browser starts after the test database is ready and stops
before it is flushed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections

from django_realtime.testing import LiveServer
from tests.browser.conftest import APPLICATION, WAIT, chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(60),
    pytest.mark.django_db(transaction=True),
]

_T = TypeVar("_T")


def in_thread(call: Callable[[], _T]) -> _T:
    """Return ``call()``, run in a thread of its own with its own connections."""

    def run() -> _T:
        try:
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture(scope="module")
def daphne_server(django_db_setup: None) -> Iterator[LiveServer]:
    """Yield daphne serving the test project on the test database, per module.

    Each test empties the database after it; the server reads it afresh.
    """
    with LiveServer(APPLICATION, databases=("default",), serve_static=True) as live:
        yield live


@pytest.fixture
def server(transactional_db: None, daphne_server: LiveServer) -> LiveServer:
    """Return the module's server, once this test's database is ready."""
    return daphne_server


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    """Yield a headless Chromium, started after the server and its database."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    """Yield the test page with the cookie of an anonymous session."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    uncaught: list[str] = []
    tab.on("pageerror", lambda error: uncaught.append(str(error)))
    tab.goto(server.url + "/")
    tab.wait_for_function("window.t !== undefined")
    tab.evaluate("() => fetch('/visit/', { method: 'POST' })")
    yield tab
    context.close()
    assert not uncaught, f"Uncaught errors in the page: {uncaught}"


def make_user(username: str) -> None:
    in_thread(lambda: User.objects.create(username=username))


def session_exists(key: str) -> bool:
    return in_thread(lambda: SessionStore().exists(key))


def session_cookie(page: Page) -> str:
    [value] = [c["value"] for c in page.context.cookies() if c["name"] == "sessionid"]
    return value


def session_frames(page: Page) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = page.evaluate(
        "t.tap.received.filter((frame) => frame.kind === 'session')"
    )
    return frames


def test_a_login_over_the_socket_gives_the_page_the_new_session_cookie(
    page: Page,
) -> None:
    make_user("alice")
    old_key = session_cookie(page)

    result = page.evaluate(
        """async () => {
            window.c = t.open({}, "/ws/session/");
            const key = await c.rt.request("login", "alice");
            const whoami = await (await fetch("/whoami/")).json();
            return { key, whoami, sessions: c.sessions };
        }"""
    )

    # The login's reply came once the cookie was taken: HTTP sees the login.
    assert result["whoami"] == {"user": "alice", "cart": "apples"}
    assert result["sessions"] == [{"ok": True}]
    assert session_cookie(page) == result["key"] != old_key
    assert len(session_frames(page)) == 1
    assert not session_exists(old_key)


def test_a_login_before_the_accept_on_daphne_reaches_the_page_as_a_session_frame(
    page: Page,
) -> None:
    make_user("alice")
    old_key = session_cookie(page)

    result = page.evaluate(
        """async () => {
            window.c = t.open({}, "/ws/session/?login=alice");
            await t.until(() => c.sessions.length > 0);
            const key = await c.rt.request("session_key");
            const whoami = await (await fetch("/whoami/")).json();
            return { key, whoami, sessions: c.sessions };
        }"""
    )

    assert result["sessions"] == [{"ok": True}]
    assert result["whoami"] == {"user": "alice", "cart": "apples"}
    assert session_cookie(page) == result["key"] != old_key
    assert not session_exists(old_key)


def test_frames_after_a_session_frame_wait_until_its_cookie_is_taken_or_refused(
    page: Page,
) -> None:
    result = page.evaluate(
        """async () => {
            window.c = t.open({}, "/ws/session/");
            await c.rt.request("echo", 0);
            addEventListener("error", (event) => event.preventDefault());
            const order = [];
            c.rt.onSession(() => order.push("session"));
            // Keep the reply back, then deliver it right behind a session
            // frame whose token the server never issued.
            t.tap.drop = (frame) => frame.kind === "reply";
            const echoed = c.rt.request("echo", 1).then((data) => order.push(data));
            await t.until(() => t.tap.dropped.length === 1);
            t.tap.drop = null;
            const socket = t.tap.sockets.at(-1);
            const session = {
                kind: "session", token: "z".repeat(32), url: "/realtime/session/",
            };
            socket.onmessage({ data: JSON.stringify(session) });
            socket.onmessage({ data: JSON.stringify(t.tap.dropped[0]) });
            await echoed;
            return { order, sessions: c.sessions, errors: t.errors };
        }"""
    )

    assert result["order"] == ["session", 1]
    assert result["sessions"] == [{"ok": False, "code": "invalid_token"}]
    assert len(result["errors"]) == 1
    page.evaluate("t.errors.length = 0")


def test_take_session_cookie_refuses_a_malformed_frame(page: Page) -> None:
    outcome = page.evaluate(
        "() => t.outcome(t.realtime.takeSessionCookie({ kind: 'session', token: 1 }))"
    )

    assert (outcome["ok"], outcome["code"]) == (False, "bad_frame")
