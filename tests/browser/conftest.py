"""Fixtures of the browser tests: Debian's Chromium driven by Playwright.

The tests skip, saying why, when Playwright or Chromium is missing; under
``CI=true`` they fail instead. Playwright's own browser downloads are never
used: Chromium is the system's (``apt-get install chromium``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from django_realtime.testing import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

APPLICATION = "tests.browser.project:application"
#: How long a test waits for the page to reach a state, in ms.
WAIT = 10_000


def chromium_path() -> str | None:
    """Return the system Chromium's path, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Say what the browser tests lack, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: pip install -e '.[test]'"
    if chromium_path() is None:
        return "Chromium is not installed: apt-get install -y chromium"
    return None


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Run a headless Chromium for the ``with`` block.

    Skip the test, saying why, if Playwright or Chromium is missing; under
    ``CI=true``, fail it.
    """
    reason = missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required under CI=true)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path())
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Yield a headless Chromium for the module's tests."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """Yield daphne serving the test project; a test may restart it."""
    with LiveServer(APPLICATION, databases=(), serve_static=True) as live_server:
        yield live_server


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    """Yield the test page, loaded; fail the test on uncaught page errors."""
    if not server.running:
        server.start()
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    uncaught: list[str] = []
    tab.on("pageerror", lambda error: uncaught.append(str(error)))
    tab.goto(server.url + "/")
    tab.wait_for_function("window.t !== undefined")
    yield tab
    context.close()
    assert not uncaught, f"Uncaught errors in the page: {uncaught}"


def publish(server: LiveServer, stream: str, count: int, start: int = 0) -> None:
    """Publish ticks ``start`` to ``start + count - 1`` from the server."""
    query = urllib.parse.urlencode({"stream": stream, "count": count, "start": start})
    request = urllib.request.Request(f"{server.url}/publish/?{query}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def wait(page: Page, expression: str, arg: Any = None) -> Any:
    """Wait until ``expression`` (a JS function of ``arg``) is truthy; return it."""
    return page.wait_for_function(expression, arg=arg, timeout=WAIT).json_value()
