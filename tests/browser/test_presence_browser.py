"""Presence in Chromium: three tabs of one user count once and leave once.

Alice opens the example chat's room in three tabs of one browser (one
session); Bob watches from another browser. Bob's "online" badge lists
Alice once, with three pages (the badge's title), and when her three tabs
close she leaves once: the badge never shows her again, and never showed
her twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import WAIT, browser
from tests.browser.example.test_chat_browser import RoomPage, new_room
from tests.e2e.example.test_chat_e2e import Serve, example_db, redis_url, serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser as Chromium, BrowserContext

__all__ = ["browser", "example_db", "redis_url", "serve"]  # fixtures used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Every value and title the badge shows, in order.
RECORD_BADGE = """
window.badge = [];
new MutationObserver(() => {
  const output = document.getElementById("online-names");
  if (!output) return;
  const shown = `${output.value}|${output.title}`;
  if (window.badge.at(-1) !== shown) window.badge.push(shown);
}).observe(document, {
  childList: true, subtree: true, characterData: true, attributes: true,
});
"""


@pytest.fixture
def contexts(browser: Chromium) -> Iterator[list[BrowserContext]]:
    opened = [browser.new_context() for _ in range(2)]
    yield opened
    for context in opened:
        context.close()


def badge(page: RoomPage, title: str) -> None:
    page.tab.wait_for_function(
        "(title) => document.getElementById('online-names').title === title",
        arg=title,
        # A page that leaves stays a member for the grace period (5 s).
        timeout=WAIT * 2,
    )


def test_three_tabs_of_one_user_count_once_and_leave_once(
    serve: Serve, contexts: list[BrowserContext]
) -> None:
    chat = serve("runserver")
    room = new_room(chat)
    url = f"http://{chat.address}"
    alice_context, bob_context = contexts
    bob_context.add_init_script(RECORD_BADGE)
    bob = RoomPage(bob_context.new_page())
    bob.tab.set_default_timeout(WAIT)
    bob.log_in_and_open(url, room, username="bob")
    badge(bob, "bob: 1")

    tabs = [RoomPage(alice_context.new_page()) for _ in range(3)]
    for tab in tabs:
        tab.tab.set_default_timeout(WAIT)
    tabs[0].log_in_and_open(url, room, username="alice")
    for tab in tabs[1:]:
        # The same browser, logged in already: the room opens at once.
        tab.tab.goto(f"{url}/chat/{room}/")
        tab.wait_for_status("open")
    badge(bob, "alice: 3, bob: 1")
    assert bob.tab.text_content("#online-names") == "alice, bob"
    badge(tabs[2], "alice: 3, bob: 1")

    for tab in tabs:
        tab.tab.close()
    badge(bob, "bob: 1")
    shown = bob.tab.evaluate("window.badge")
    with_alice = [i for i, value in enumerate(shown) if value.startswith("alice")]
    # Alice arrived once and left once: her entries are one unbroken run.
    assert with_alice == list(range(with_alice[0], with_alice[-1] + 1)), shown
    assert all(value.count("alice") <= 2 for value in shown), shown
    for page in [bob, *tabs]:
        assert not page.uncaught, f"Uncaught errors in the page: {page.uncaught}"
    assert chat.terminate() == 0, chat.output
