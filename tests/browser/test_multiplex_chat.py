"""The example room page's multiplexed socket in Chromium: badges beside the chat.

Alice's and Bob's room pages each open one socket, ``/ws/chat/``, with the
room's stream and its presence (who is online) and the jobs count as
topics (``example_project/chat/routing.py``). Each page sees both users
online, then only itself once the other page is gone (after the presence
grace period, 5 s); messages still flow, and the jobs count shows the
user's active jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import WAIT, browser
from tests.browser.example.test_chat_browser import RoomPage, new_room
from tests.e2e.example.test_chat_e2e import Serve, example_db, redis_url, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser as Chromium

__all__ = ["browser", "example_db", "redis_url", "serve"]  # fixtures used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


# Before the page's scripts run: note the path of every WebSocket it opens.
RECORD_SOCKETS = """
window.socketPaths = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(url, ...rest) {
    super(url, ...rest);
    window.socketPaths.push(new URL(url).pathname);
  }
};
"""


@pytest.fixture
def pages(browser: Chromium) -> Iterator[dict[str, RoomPage]]:
    contexts, opened = [], {}
    for name in ("alice", "bob"):
        context = browser.new_context()
        context.add_init_script(RECORD_SOCKETS)
        tab = context.new_page()
        tab.set_default_timeout(WAIT)
        contexts.append(context)
        opened[name] = RoomPage(tab)
    yield opened
    for context in contexts:
        context.close()
    for page in opened.values():
        assert not page.uncaught, f"Uncaught errors in the page: {page.uncaught}"


def online(page: RoomPage, names: str) -> None:
    page.tab.wait_for_function(
        "(names) => document.getElementById('online-names').value === names",
        arg=names,
        # A page that leaves stays a member for the grace period.
        timeout=WAIT * 2,
    )


def test_the_online_badge_and_jobs_count_share_the_room_pages_socket(
    serve: Serve, pages: dict[str, RoomPage]
) -> None:
    chat = serve("runserver")
    room = new_room(chat)
    url = f"http://{chat.address}"
    pages["alice"].log_in_and_open(url, room, username="alice")
    online(pages["alice"], "alice")
    pages["bob"].log_in_and_open(url, room, username="bob")
    online(pages["bob"], "alice, bob")
    online(pages["alice"], "alice, bob")
    pages["alice"].tab.wait_for_function(
        "() => document.getElementById('jobs-count').value === '0'", timeout=WAIT
    )

    pages["bob"].say("hello over the shared socket")
    pages["alice"].wait_for_log(1)
    # One socket for the room's stream and both badges.
    assert pages["alice"].tab.evaluate("window.socketPaths") == ["/ws/chat/"]

    pages["bob"].tab.close()
    online(pages["alice"], "alice")
    assert chat.terminate() == 0, chat.output
