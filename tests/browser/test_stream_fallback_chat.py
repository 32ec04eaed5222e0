"""The example chat in Chromium without WebSockets: it falls back, loses nothing.

Alice and Bob each have a room page behind a round-robin proxy over two
``runserver`` processes of the example project (history in Redis, no
affinity). In one case the pages have no ``window.WebSocket``; in the
other the proxy refuses every upgrade. They talk, every server process
restarts, they talk again: each page shows every message once, in order,
without reloading, and its status names the transport. Its online badge
shows both users all along: a page on SSE is a member of the room.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser.example.test_chat_browser import RoomPage, new_room
from tests.e2e.example.test_chat_e2e import (
    Serve,
    ServerProcess,
    example_db,
    ready,
    redis_url,
    serve,
)
from tests.e2e.streams_http.proxy import proxying

if TYPE_CHECKING:
    from playwright.sync_api import Browser as Chromium, Response

__all__ = ["example_db", "redis_url", "serve"]  # fixtures used by name

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]


def _port(server: ServerProcess) -> int:
    return int(server.address.rsplit(":", 1)[1])


def _online(page: RoomPage, names: str) -> None:
    """Wait until the page's online badge shows ``names``."""
    page.tab.wait_for_function(
        "(names) => document.getElementById('online-names').value === names",
        arg=names,
    )


def _say(page: RoomPage, text: str) -> None:
    """Say ``text`` and wait for the answer to its POST.

    The message shows when it comes back on the event stream, which may be
    before its POST's answer: a server killed in between leaves the page
    unsure whether it was saved, and the page says so (an error line).
    """
    sent = json.dumps({"text": text}, separators=(",", ":"))

    def answer(response: Response) -> bool:
        request = response.request
        return request.method == "POST" and sent in (request.post_data or "")

    with page.tab.expect_response(answer):
        page.say(text)


@pytest.fixture
def pages(
    browser: Chromium, request: pytest.FixtureRequest
) -> Iterator[dict[str, RoomPage]]:
    """Yield Alice's and Bob's pages (without WebSocket if the test says so)."""
    no_websocket = request.node.callspec.params["case"] == "no-websocket"
    contexts, opened = [], {}
    for name in ("alice", "bob"):
        context = browser.new_context()
        if no_websocket:
            context.add_init_script("delete window.WebSocket;")
        tab = context.new_page()
        tab.set_default_timeout(20_000)
        contexts.append(context)
        opened[name] = RoomPage(tab)
    yield opened
    for context in contexts:
        context.close()


@pytest.mark.parametrize("case", ["no-websocket", "upgrade-refused"])
def test_two_users_chat_over_sse_across_a_restart_and_see_each_message_once(
    serve: Serve, redis_url: str, pages: dict[str, RoomPage], case: str
) -> None:
    servers = [serve("runserver", wait=False, REDIS_URL=redis_url) for _ in range(2)]
    ready(*servers)
    room = new_room(servers[0])
    with proxying(
        [_port(server) for server in servers], refuse_upgrade=case == "upgrade-refused"
    ) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        for name, page in pages.items():
            page.log_in_and_open(url, room, username=name)
            page.wait_for_status("open (sse)")
            page.mark()
        for page in pages.values():
            _online(page, "alice, bob")
        for n in range(2):
            for name, page in pages.items():
                _say(page, f"{name} {n}")
                page.wait_for_log(2 * n + (1 if name == "alice" else 2))
        for page in pages.values():
            page.wait_for_log(4)

        for server in servers:
            server.kill()
        for page in pages.values():
            page.wait_for_status("reconnecting")
        servers = [
            serve("runserver", wait=False, REDIS_URL=redis_url) for _ in range(2)
        ]
        ready(*servers)
        proxy.backends = [_port(server) for server in servers]
        for page in pages.values():
            page.network_back()
            page.wait_for_status("open (sse)")

        for n in range(2, 4):
            for name, page in pages.items():
                _say(page, f"{name} {n}")
                page.wait_for_log(2 * n + (1 if name == "alice" else 2))
        logs = [page.wait_for_log(8) for page in pages.values()]
        for page in pages.values():
            _online(page, "alice, bob")

    assert logs[0] == logs[1]
    texts = [text for _, text in logs[0]]
    assert texts == [
        f"{name}: {name} {n}" for n in range(4) for name in ("alice", "bob")
    ]
    assert len({id_ for id_, _ in logs[0]}) == 8
    for page in pages.values():
        assert not page.reloaded()
        assert page.tab.locator("#chat-log .error").all_inner_texts() == []
    if case == "upgrade-refused":
        assert proxy.refused_upgrades >= 2
