"""realtime.js falls back to SSE or long-polling when WebSockets cannot be had.

Two users (two browser contexts) talk through a round-robin proxy over
two server processes (uvicorn and daphne, history in Redis), with no
affinity; then every server process restarts. Each page sees every
message once, in order, and names the transport it uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.streams_http.conftest import APPLICATION
from tests.e2e.streams_http.proxy import RoundRobinProxy, proxying
from tests.servers import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]

WAIT = 20_000


class Backends:
    """The server processes behind the proxy; :meth:`restart` replaces them all."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started = 0
        self.processes = [self._start(kind) for kind in ("uvicorn", "daphne")]

    def _start(self, kind: str) -> ServerProcess:
        self.started += 1
        return ServerProcess(
            kind, APPLICATION, self.env, self.logs / f"{self.started}.log"
        )

    @property
    def ports(self) -> list[int]:
        return [process.port for process in self.processes]

    def restart(self, proxy: RoundRobinProxy) -> None:
        for process in self.processes:
            process.kill()
        self.processes = [self._start(process.kind) for process in self.processes]
        proxy.backends = self.ports

    def kill(self) -> None:
        for process in self.processes:
            process.kill()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Backends]:
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.streams_http.settings",
        "STREAMS_HTTP_PREFIX": f"streams-http-{uuid.uuid4().hex[:8]}",
    }
    started = Backends(env, tmp_path)
    try:
        yield started
    finally:
        started.kill()


def _open_page(browser: Browser, url: str, *, no_websocket: bool) -> Page:
    context = browser.new_context()
    if no_websocket:
        context.add_init_script("delete window.WebSocket;")
    page = context.new_page()
    page.set_default_timeout(WAIT)
    page.goto(url)
    page.wait_for_function("window.ready === true")
    return page


def _opens(page: Page) -> list[str]:
    result: list[str] = page.evaluate(
        "states.filter((e) => e.state === 'open').map((e) => e.transport)"
    )
    return result


def _say(pages: dict[str, Page], rounds: range) -> None:
    for n in rounds:
        for name, page in pages.items():
            page.evaluate("(data) => say(data)", {"from": name, "n": n})


def _received(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(
        "got.map((p) => ({offset: p.offset, from: p.data.from, n: p.data.n}))"
    )
    return result


@pytest.mark.parametrize(
    ("case", "options", "transport"),
    [
        ("no-websocket", {}, "sse"),
        ("upgrade-refused", {}, "sse"),
        ("no-websocket", {"transports": ["websocket", "poll"]}, "poll"),
    ],
    ids=["no-websocket-sse", "upgrade-refused-sse", "no-websocket-poll"],
)
def test_two_users_talk_over_the_fallback_and_across_a_restart_see_each_message_once(
    browser: Browser,
    backends: Backends,
    case: str,
    options: dict[str, Any],
    transport: str,
) -> None:
    with proxying(backends.ports, refuse_upgrade=case == "upgrade-refused") as proxy:
        url = f"http://127.0.0.1:{proxy.port}/page/"
        pages = {
            name: _open_page(browser, url, no_websocket=case == "no-websocket")
            for name in ("alice", "bob")
        }
        for page in pages.values():
            page.evaluate("(options) => start(options)", options)
            assert page.evaluate("rt.transport") == transport
        _say(pages, range(3))
        for page in pages.values():
            page.wait_for_function("got.length >= 6")
        opened = {name: len(_opens(page)) for name, page in pages.items()}

        backends.restart(proxy)
        for name, page in pages.items():
            page.wait_for_function(
                f"states.filter((e) => e.state === 'open').length > {opened[name]}"
                " && rt.state === 'open'"
            )
        _say(pages, range(3, 6))
        for page in pages.values():
            page.wait_for_function("got.length >= 12")

        expected = sorted((n, name) for n in range(6) for name in pages)
        seen = []
        for page in pages.values():
            received = _received(page)
            assert [p["offset"] for p in received] == list(range(1, 13))
            assert sorted((p["n"], p["from"]) for p in received) == expected
            seen.append(received)
            assert set(_opens(page)) == {transport}
        assert seen[0] == seen[1]
        if case == "upgrade-refused":
            assert proxy.refused_upgrades >= 2
        assert len(proxy.forwarded) >= 2  # both processes served


@pytest.mark.parametrize("transports", [["sse"], ["poll"]], ids=["sse", "poll"])
def test_many_streams_subscribed_at_once_share_one_event_stream_or_poll(
    browser: Browser, backends: Backends, transports: list[str]
) -> None:
    with proxying(backends.ports) as proxy:
        page = _open_page(
            browser, f"http://127.0.0.1:{proxy.port}/page/", no_websocket=False
        )
        page.evaluate("(transports) => start({transports})", transports)
        page.evaluate(
            """async () => {
                window.many = [];
                await Promise.all(["open.m1", "open.m2", "open.m3"].map((stream) => {
                    const sub = rt.subscribe(stream);
                    sub.on("*", (data, p) => many.push([p.stream, p.offset, data.n]));
                    return sub.ready;
                }));
            }"""
        )
        for n in range(3):
            for stream in ("open.m1", "open.m2", "open.m3"):
                page.evaluate(
                    "([stream, n]) => rt.request('publish', {stream, data: {n}})",
                    [stream, n],
                )
        page.wait_for_function("many.length >= 9")
        many = page.evaluate("many")
    for stream in ("open.m1", "open.m2", "open.m3"):
        assert [(o, n) for s, o, n in many if s == stream] == [(1, 0), (2, 1), (3, 2)]
    assert page.evaluate("rt.transport") == transports[0]


def test_a_client_on_a_fallback_moves_to_the_websocket_once_it_gets_through(
    browser: Browser, backends: Backends
) -> None:
    with proxying(backends.ports, refuse_upgrade=True) as proxy:
        page = _open_page(
            browser, f"http://127.0.0.1:{proxy.port}/page/", no_websocket=False
        )
        page.evaluate("() => start({retryWebSocket: 300})")
        assert page.evaluate("rt.transport") == "sse"
        page.evaluate("() => say({from: 'a', n: 0})")
        page.wait_for_function("got.length >= 1")

        proxy.refuse_upgrade = False  # the network lets WebSockets through now
        page.wait_for_function("rt.transport === 'websocket' && rt.state === 'open'")
        page.evaluate("() => say({from: 'a', n: 1})")
        page.wait_for_function("got.length >= 2")
        received = _received(page)
    assert [(p["offset"], p["n"]) for p in received] == [(1, 0), (2, 1)]
    assert _opens(page)[-1] == "websocket"
