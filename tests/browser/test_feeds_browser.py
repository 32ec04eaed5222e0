"""realtime.js's collection() in Chromium: a live list of a feed's rows.

The page (:mod:`tests.browser.feeds_project`, the example of
docs/topics/browser-client.rst) lists the jobs its user may read; the
server changes jobs through an HTTP hook, as views would. The page shows
its own jobs only, follows changes, drops a job moved to someone else,
and after being offline catches up with the changes it missed, filtered by
the permissions of now.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.db import connections

from django_realtime.testing import LiveServer
from example_project.jobs.models import Job

from .conftest import WAIT, chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

_T = TypeVar("_T")


def in_thread(call: Callable[[], _T]) -> _T:
    """Return ``call()``, run in a thread of its own (Playwright owns this one)."""

    def run() -> _T:
        try:
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture(scope="module")
def feeds_server(django_db_setup: None) -> Iterator[LiveServer]:
    with LiveServer(
        "tests.browser.feeds_project:application",
        databases=("default",),
        serve_static=True,
    ) as live:
        yield live


@pytest.fixture
def server(transactional_db: None, feeds_server: LiveServer) -> LiveServer:
    return feeds_server


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def open_page(browser: Browser, server: LiveServer, user: User) -> Page:
    tab = browser.new_context().new_page()
    tab.set_default_timeout(WAIT)
    uncaught: list[str] = []
    tab.on("pageerror", lambda error: uncaught.append(str(error)))
    tab.goto(f"{server.url}/?user={user.pk}")
    tab.wait_for_function("window.f !== undefined")
    tab.evaluate("f.jobs.ready")
    assert not uncaught, uncaught
    return tab


def change(server: LiveServer, **query: Any) -> int:
    url = f"{server.url}/change/?" + "&".join(f"{k}={v}" for k, v in query.items())
    request = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.read())


def shown_becomes(page: Page, expected: list[str]) -> None:
    page.wait_for_function(
        "(expected) => JSON.stringify(f.shown()) === JSON.stringify(expected)",
        arg=expected,
        timeout=WAIT,
    )


def test_the_live_list_follows_changes_by_the_permissions_of_now(
    browser: Browser, server: LiveServer
) -> None:
    def setup() -> tuple[User, User, Job, Job]:
        alice = User.objects.create_user("alice")
        bob = User.objects.create_user("bob")
        mine = Job.objects.create(owner=alice, kind="wait", parameters={})
        theirs = Job.objects.create(owner=bob, kind="wait", parameters={})
        return alice, bob, mine, theirs

    alice, bob, a1, b1 = in_thread(setup)
    page = open_page(browser, server, alice)
    assert page.evaluate("f.shown()") == [f"{a1.pk}: queued 0 %"]

    a2 = change(server, op="create", owner=alice.pk)
    b2 = change(server, op="create", owner=bob.pk)
    change(server, op="progress", id=a1.pk, progress=40)
    shown_becomes(page, [f"{a2}: queued 0 %", f"{a1.pk}: queued 40 %"])

    # Given to Bob: it leaves Alice's list.
    change(server, op="move", id=a1.pk, owner=bob.pk)
    shown_becomes(page, [f"{a2}: queued 0 %"])

    # Offline while a job of Bob's is given to Alice and hers is given away.
    page.evaluate("f.offline = true; f.drop()")
    page.wait_for_function("f.state === 'reconnecting'")
    change(server, op="move", id=b1.pk, owner=alice.pk)
    change(server, op="move", id=a2, owner=bob.pk)
    change(server, op="progress", id=b2, progress=10)
    page.evaluate("f.offline = false")
    shown_becomes(page, [f"{b1.pk}: queued 0 %"])

    events = page.evaluate("f.events")
    assert events == [
        ["enter", a2],
        ["update", a1.pk],
        ["leave", a1.pk],
        ["enter", b1.pk],
        ["leave", a2],
    ]
    # Bob's jobs never reached the page, live or replayed.
    assert b2 not in [pk for _type, pk in events]
    page.context.close()


def test_a_query_and_a_record_follow_rows_into_and_out_of_their_view(
    browser: Browser, server: LiveServer
) -> None:
    def setup() -> tuple[User, User, Job, Job]:
        alice = User.objects.create_user("alice")
        bob = User.objects.create_user("bob")
        mine = Job.objects.create(owner=alice, kind="wait", parameters={})
        other = Job.objects.create(owner=alice, kind="wait", parameters={})
        return alice, bob, mine, other

    alice, bob, a1, a2 = in_thread(setup)
    page = open_page(browser, server, alice)
    page.evaluate("f.active.ready")
    assert page.evaluate("f.activeShown()") == [f"{a1.pk}: queued", f"{a2.pk}: queued"]
    assert page.evaluate(f"f.watch({a2.pk})") == 0
    # One view of a feed per connection: a second one is refused at once.
    assert "one collection of the feed" in page.evaluate("f.second()")

    def active_becomes(expected: list[str]) -> None:
        page.wait_for_function(
            "(want) => JSON.stringify(f.activeShown()) === JSON.stringify(want)",
            arg=expected,
            timeout=WAIT,
        )

    # Out of the query and back in.
    change(server, op="status", id=a1.pk, status="done")
    active_becomes([f"{a2.pk}: queued"])
    change(server, op="status", id=a1.pk, status="running")
    active_becomes([f"{a1.pk}: running", f"{a2.pk}: queued"])
    b1 = change(server, op="create", owner=bob.pk)  # not Alice's: never shown

    # The record: its changes, gone when given away, back, gone when deleted
    # (each awaited: permissions are those of delivery time).
    def record_becomes(count: int) -> None:
        page.wait_for_function(f"f.oneEvents.length >= {count}", timeout=WAIT)

    change(server, op="progress", id=a1.pk, progress=5)  # another row
    change(server, op="progress", id=a2.pk, progress=30)
    record_becomes(2)
    change(server, op="move", id=a2.pk, owner=bob.pk)
    record_becomes(3)
    change(server, op="move", id=a2.pk, owner=alice.pk)
    record_becomes(4)
    change(server, op="delete", id=a2.pk)
    record_becomes(5)
    assert page.evaluate("f.oneEvents") == [0, 30, None, 30, None]
    assert page.evaluate("f.one.row") is None
    active_becomes([f"{a1.pk}: running"])
    assert b1 not in page.evaluate("[...f.active.rows.keys()]")
    page.context.close()
