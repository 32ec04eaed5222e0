"""realtime.js's multiplex() in Chromium: topics on one socket, reopened after a drop.

The page (:mod:`tests.browser.multiplex_project`) opens topics on one
multiplexed socket; the tests drive it with ``page.evaluate`` and drop the
socket from the page, keeping the client offline while the server
publishes, to see topics reopen and a stream inside one resume.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from django_realtime.testing import LiveServer

from .conftest import WAIT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(
        "tests.browser.multiplex_project:application",
        databases=(),
        serve_static=True,
    ) as live_server:
        yield live_server


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    uncaught: list[str] = []
    tab.on("pageerror", lambda error: uncaught.append(str(error)))
    tab.goto(server.url + "/")
    tab.wait_for_function("window.m !== undefined")
    tab.evaluate("m.connect()")
    yield tab
    context.close()
    assert not uncaught, f"Uncaught errors in the page: {uncaught}"


def wait(page: Page, expression: str) -> Any:
    return page.wait_for_function(expression, timeout=WAIT).json_value()


def publish(server: LiveServer, stream: str, n: int) -> None:
    request = urllib.request.Request(
        f"{server.url}/publish/?stream={stream}&n={n}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_topics_share_one_socket_with_their_own_frames_and_refusals(
    page: Page,
) -> None:
    page.evaluate(
        """() => {
        const echo = m.open("echo");
        echo.send("queued before the open");
        echo.send(new Uint8Array([1, 2, 3]));
        m.open("room/secret");
        m.open("nowhere");
    }"""
    )
    assert wait(page, "() => m.got.echo.length === 2 && m.got.echo") == [
        "echo queued before the open",
        [1, 2, 3],
    ]
    assert wait(page, "() => m.closes['room/secret']") == {
        "code": 4403,
        "reason": "not a member of secret",
        "final": True,
    }
    assert wait(page, "() => m.errors.nowhere") == "unknown_topic"
    assert page.evaluate("m.sockets.length") == 1


def test_topics_and_streams_in_them_come_back_after_a_reconnect(
    page: Page, server: LiveServer
) -> None:
    page.evaluate(
        """() => {
        m.open("echo");
        m.rt = m.mux.streams("feed");
        m.rt.subscribe("ticks", {
            onPublication: (data, p) => m.publications.push(data.n),
        });
    }"""
    )
    wait(page, "() => m.rt.state === 'open' && m.opens.echo === 1")
    assert page.evaluate("() => m.rt.request('echo', 1)") == 1
    publish(server, "ticks", 1)
    wait(page, "() => m.publications.length === 1")
    page.evaluate("() => { m.offline = true; m.drop(); }")
    wait(page, "() => m.closes.echo && m.closes.echo.final === false")
    publish(server, "ticks", 2)
    publish(server, "ticks", 3)
    page.evaluate("() => { m.offline = false; }")
    assert wait(page, "() => m.publications.length === 3 && m.publications") == [
        1,
        2,
        3,
    ]
    wait(page, "() => m.opens.echo === 2")
    page.evaluate("() => m.mux.state === 'open' && null")
    assert page.evaluate("m.sockets.length") == 2
    assert page.evaluate("() => m.rt.request('echo', 'again')") == "again"


def test_a_quiet_socket_is_kept_alive_by_pings(page: Page) -> None:
    page.evaluate(
        """() => {
        m.mux.close();
        m.sockets.length = 0;
        m.connect({ pingInterval: 100, pongTimeout: 2000 });
        m.open("echo");
    }"""
    )
    wait(page, "() => m.opens.echo === 1")
    wait(page, "() => m.pongs >= 3")  # three intervals of silence, answered
    assert page.evaluate("m.mux.state") == "open"
    assert page.evaluate("m.sockets.length") == 1
