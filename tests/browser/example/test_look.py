"""The example's look in Chromium: what makes it read as a product.

Every page extends ``chat/templates/example/base.html`` (the navigation bar,
``example/site.css``); the room page marks the user's own messages, shows
when each was said, lists the rooms, shows its connection's state and keeps
the message box's draft across reloads (``chat/draft.js``). The pages run in
Debian's Chromium (Playwright) against the example project on real server
processes, as in ``test_chat_browser.py``.

With ``EXAMPLE_SCREENSHOTS=<directory>`` in the environment, the tests also
save the documentation's screenshots there (``docs/_static/example-*.png``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import WAIT, browser
from tests.browser.example.test_chat_browser import (
    Bob,
    CuttableProxy,
    RoomPage,
    new_room,
    proxies,
)
from tests.e2e.example.test_chat_e2e import (
    MEMBER,
    PASSWORD,
    Browser,
    Serve,
    ServerProcess,
    example_db,
    redis_url,
    serve,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser as Chromium, BrowserContext

__all__ = ["browser", "example_db", "proxies", "redis_url", "serve"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: A phone's screen, in CSS pixels (an iPhone SE's).
PHONE = {"width": 375, "height": 667}

#: The demos of the navigation bar: link text, and the path it leads to.
DEMOS = [
    ("Chat", "/chat/"),
    ("Jobs", "/jobs/"),
    ("Game of Life", "/life/"),
    ("Echo (c10k)", "/c10k/"),
]


def screenshot(tab: RoomPage, name: str, full_page: bool = False) -> None:
    """Save ``tab``'s screen as ``example-<name>.png`` if the environment asks."""
    directory = os.environ.get("EXAMPLE_SCREENSHOTS")
    if directory:
        path = Path(directory) / f"example-{name}.png"
        tab.tab.screenshot(path=str(path), full_page=full_page)


@pytest.fixture
def contexts(browser: Chromium) -> Iterator[Callable[..., RoomPage]]:
    """Return a function that opens a tab in a fresh context (its own cookies)."""
    opened: list[tuple[BrowserContext, RoomPage]] = []

    def open_tab(**options: object) -> RoomPage:
        # Times as in the screenshots: 24-hour, whatever the machine's locale.
        options.setdefault("locale", "en-GB")
        context = browser.new_context(**options)  # type: ignore[arg-type]
        tab = context.new_page()
        tab.set_default_timeout(WAIT)
        page = RoomPage(tab)
        opened.append((context, page))
        return page

    yield open_tab
    for context, page in opened:
        context.close()
        assert not page.uncaught, f"Uncaught errors in the page: {page.uncaught}"


def url(server: ServerProcess) -> str:
    return f"http://{server.address}"


def named_room(server: ServerProcess, name: str) -> str:
    """Create the room ``name`` (one test's own), as the superuser bob."""
    creator = Browser(server.address)
    creator.log_in("bob")
    assert creator.create_room(name).status == 200
    return name


def log_in(page: RoomPage, url: str, username: str, path: str = "/chat/") -> None:
    """Log in through the login form that ``path`` sends anonymous users to."""
    page.tab.goto(f"{url}{path}")
    page.tab.fill("#id_username", username)
    page.tab.fill("#id_password", PASSWORD)
    page.tab.click("button[type=submit]")
    page.tab.wait_for_url(f"{url}{path}")


def test_own_messages_are_marked_and_each_message_shows_when_it_was_said(
    serve: Serve, contexts: Callable[..., RoomPage]
) -> None:
    chat = serve("runserver")
    room = named_room(chat, "general")
    (before,) = Bob(chat, room).say("said before alice came")
    alice = contexts(viewport={"width": 1000, "height": 640})
    alice.log_in_and_open(url(chat), room)
    alice.say("hello bob, I am here")
    alice.wait_for_log(2)
    (live,) = Bob(chat, room).say("welcome, alice")
    log = alice.wait_for_log(3)
    screenshot(alice, "room")

    lines = alice.tab.evaluate(
        """() => Array.from(document.querySelectorAll("#chat-log p[data-id]"),
          (line) => ({
            mine: line.classList.contains("mine"),
            time: line.querySelector("time")?.dateTime ?? null,
            shown: line.querySelector("time")?.textContent ?? "",
            background: getComputedStyle(line).backgroundColor,
          }))"""
    )
    assert [id_ for id_, _ in log] == [before, log[1][0], live]
    assert [line["mine"] for line in lines] == [False, True, False]
    # Alice's own look different from the others'.
    assert lines[1]["background"] != lines[0]["background"]
    assert lines[0]["background"] == lines[2]["background"]
    # Each says when it was said: the rendered one and the live ones alike.
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*[+-]\d\d:\d\d", line["time"]), line
        assert re.search(r"\d\d?:\d\d", line["shown"]), line

    # Rendered by the server after a reload, they look the same.
    alice.tab.reload()
    alice.wait_for_status("open")
    assert alice.tab.evaluate(
        """() => Array.from(document.querySelectorAll("#chat-log p[data-id]"),
          (line) => [line.classList.contains("mine"),
                     /\\d\\d?:\\d\\d/.test(line.querySelector("time").textContent)])"""
    ) == [[False, True], [True, True], [False, True]]
    assert chat.terminate() == 0, chat.output


def test_the_room_list_leads_to_the_other_rooms(
    serve: Serve, contexts: Callable[..., RoomPage]
) -> None:
    chat = serve("runserver")
    first, second = new_room(chat), new_room(chat)
    alice = contexts(viewport={"width": 1000, "height": 640})
    alice.log_in_and_open(url(chat), first)

    current = alice.tab.locator("#room-list a[aria-current=page]")
    assert current.text_content() == first
    alice.tab.click(f"#room-list a:text-is('{second}')")
    alice.tab.wait_for_url(f"{url(chat)}/chat/{second}/")
    alice.wait_for_status("open")
    assert current.text_content() == second
    assert alice.tab.text_content("h1") == f"Room {second}"
    # The index lists them too.
    alice.tab.goto(f"{url(chat)}/chat/")
    listed = alice.tab.locator("#rooms a").all_text_contents()
    assert {first, second} <= set(listed)
    assert chat.terminate() == 0, chat.output


def test_the_draft_survives_the_reload_after_a_restart_and_the_state_shows(
    serve: Serve,
    proxies: Callable[[ServerProcess], CuttableProxy],
    contexts: Callable[..., RoomPage],
) -> None:
    # In-memory history: after the restart the page reloads by itself.
    chat = serve("runserver", EXAMPLE_REALTIME="memory")
    proxy = proxies(chat)
    room = new_room(chat)
    alice = contexts()
    alice.log_in_and_open(proxy.url, room)
    badge = alice.tab.locator("#chat-status")
    assert badge.get_attribute("data-state") == "open"
    alice.mark()

    proxy.refusing = True
    assert chat.terminate() == 0, chat.output
    alice.wait_for_status("reconnecting")
    assert badge.get_attribute("data-state") == "reconnecting"
    # Typed during the outage: the send button is off, the text stays.
    alice.tab.fill("#chat-message-input", "typed while the server was down")
    assert alice.tab.is_disabled("#chat-message-submit")
    restarted = serve("runserver", EXAMPLE_REALTIME="memory")
    proxy.upstream = restarted.address
    proxy.refusing = False
    alice.network_back()
    alice.tab.wait_for_function("() => window.notReloaded !== true", timeout=WAIT)
    alice.wait_for_status("open")

    assert alice.reloaded()
    assert alice.tab.input_value("#chat-message-input") == (
        "typed while the server was down"
    )
    # Sent, it is no draft any more.
    alice.tab.click("#chat-message-submit")
    alice.wait_for_log(1)
    alice.tab.reload()
    alice.wait_for_status("open")
    assert alice.tab.input_value("#chat-message-input") == ""
    assert restarted.terminate() == 0, restarted.output


def test_the_navigation_bar_leads_to_every_demo_and_staff_to_the_ops_page(
    serve: Serve, contexts: Callable[..., RoomPage]
) -> None:
    chat = serve("runserver")
    carol = contexts()
    log_in(carol, url(chat), MEMBER)
    nav = carol.tab.locator("nav.site-nav")
    for text, path in DEMOS:
        nav.get_by_role("link", name=text, exact=True).click()
        carol.tab.wait_for_url(f"{url(chat)}{path}")
        current = carol.tab.locator("nav.site-nav a[aria-current=page]")
        assert current.text_content() == text
        assert carol.tab.text_content("#user-name") == MEMBER
    # Carol is not staff: no ops page for her.
    assert nav.get_by_role("link", name="Ops").count() == 0

    alice = contexts()
    log_in(alice, url(chat), "alice")
    alice.tab.locator("nav.site-nav").get_by_role("link", name="Ops").click()
    alice.tab.wait_for_url(re.compile(r".*/admin/.*"))
    assert alice.tab.title() != ""
    assert "login" not in alice.tab.url
    assert chat.terminate() == 0, chat.output


def test_every_page_fits_a_phone_without_scrolling_sideways(
    serve: Serve, contexts: Callable[..., RoomPage]
) -> None:
    chat = serve("runserver")
    room = named_room(chat, "on-the-go")
    Bob(chat, room).say(
        "does the chat fit a phone?",
        "a long line without spaces: " + "x" * 120,
    )
    phone = contexts(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    phone.tab.goto(f"{url(chat)}/accounts/login/")
    assert phone.tab.get_attribute("meta[name=viewport]", "content") == (
        "width=device-width, initial-scale=1"
    )
    wider = "() => document.documentElement.scrollWidth - window.innerWidth"
    assert phone.tab.evaluate(wider) <= 0, "/accounts/login/"
    phone.log_in_and_open(url(chat), room)
    phone.say("it does, and mine are on the right")
    phone.wait_for_log(3)
    phone.tab.evaluate("() => window.scrollTo(0, 0)")
    screenshot(phone, "phone")
    for path in [f"/chat/{room}/", "/chat/", "/jobs/", "/life/", "/c10k/"]:
        phone.tab.goto(f"{url(chat)}{path}")
        phone.tab.wait_for_load_state("load")
        assert phone.tab.evaluate(wider) <= 0, path
    assert chat.terminate() == 0, chat.output
