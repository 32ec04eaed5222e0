"""realtime.js's multiplex() in Chromium with no WebSocket: stream topics go over SSE.

The page (:mod:`tests.browser.multiplex_project`) has no ``WebSocket`` (as
behind a network that blocks them); its multiplexed socket never opens.
Its stream topic falls back to server-sent events under the multiplexer's
``multiplex_http_urls()`` and still subscribes, receives and requests; a
stream client opened on a topic of another consumer is refused for good
(``needs_socket``), and a plain topic waits for the socket.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING

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
    context.add_init_script("delete window.WebSocket;")
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    tab.goto(server.url + "/")
    tab.wait_for_function("window.m !== undefined")
    yield tab
    context.close()


def publish(server: LiveServer, stream: str, n: int) -> None:
    request = urllib.request.Request(
        f"{server.url}/publish/?stream={stream}&n={n}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_stream_topics_work_over_sse_when_the_websocket_is_blocked(
    page: Page, server: LiveServer
) -> None:
    page.evaluate(
        """async () => {
        m.connect({ httpUrl: "/realtime/mux/" });
        m.feed = m.mux.streams("feed");
        m.feedGot = [];
        const sub = m.feed.subscribe("news");
        sub.on("*", (data, p) => m.feedGot.push([p.offset, data.n]));
        await sub.ready;
        m.echoed = await m.feed.request("echo", { hi: 1 });
        m.wrong = m.mux.streams("echo");
        m.wrongClosed = null;
        m.wrong.onState((e) => e.state === "closed" && (m.wrongClosed = e));
        m.plain = m.open("echo");
    }"""
    )
    assert page.evaluate("m.feed.transport") == "sse"
    assert page.evaluate("m.echoed") == {"hi": 1}
    for n in range(3):
        publish(server, "news", n)
    page.wait_for_function("m.feedGot.length >= 3")
    assert page.evaluate("m.feedGot") == [[1, 0], [2, 1], [3, 2]]
    # A topic whose consumer is not a StreamConsumer cannot go over HTTP.
    page.wait_for_function("m.wrongClosed !== null")
    assert page.evaluate("m.wrongClosed.code") == 1008
    # A plain topic needs the socket: it waits for it.
    assert page.evaluate("m.plain.state") == "opening"
    assert page.evaluate("m.mux.state") != "open"
