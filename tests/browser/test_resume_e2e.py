"""Every message exactly once, in order, in a browser, whatever breaks meanwhile.

A page subscribes to a stream while another process publishes to it at a
steady rate through the Redis history store. Meanwhile the test breaks
things, one after the other, each once the page has caught up with the
last: it cuts the page's connection from both ends, restarts the server
process gracefully and by a crash, and makes Redis drop the server's
pub/sub connection and then all its connections. At the end the page holds
every message exactly once, in order, and was never told of a loss.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from django_realtime.testing import LiveServer
from django_realtime.testing.streams import drop_redis_connections
from tests.browser.conftest import APPLICATION, WAIT, wait
from tests.browser.stores import PREFIX_ENV, REDIS_URL

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

COUNT = 600
RATE = 60.0  # per second: 10 s of publishing


@pytest.fixture
def prefix() -> str:
    """Return a Redis prefix no other test run uses."""
    return f"e2e{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server(prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """Yield daphne serving the test project with history in Redis."""
    monkeypatch.setenv(PREFIX_ENV, prefix)
    with LiveServer(APPLICATION, databases=(), serve_static=True) as live_server:
        yield live_server


@pytest.fixture
def clean_redis(prefix: str) -> Iterator[None]:
    """Remove the test's keys from Redis afterwards."""
    yield
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def store_name(page: Page) -> str:
    """Return the Redis client name of the server's store connections."""
    name: str = page.evaluate("() => c.rt.request('store_name', null)")
    assert name, "The server's store has no Redis client name"
    return name


def drop_server_connections(page: Page, pubsub_only: bool) -> int:
    """Make Redis close the server's pub/sub connection, or all of them."""
    name = store_name(page)
    if pubsub_only:
        name += "-pubsub"
    # Playwright's sync API keeps its own event loop on this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(
            lambda: asyncio.run(drop_redis_connections(REDIS_URL, name_prefix=name))
        ).result()


def test_page_gets_every_message_exactly_once_through_every_fault(
    page: Page, server: LiveServer, prefix: str, clean_redis: None
) -> None:
    stream = "e2e.ticks"
    page.evaluate(
        """async (stream) => {
            window.c = t.open({ backoff: { initial: 100, max: 1000 } });
            window.got = t.follow(c.rt, stream);
            await got.sub.ready;
        }""",
        stream,
    )
    arguments = [prefix, stream, str(COUNT), str(RATE), "--held"]
    publisher = subprocess.Popen(
        [sys.executable, "-m", "tests.browser.publisher", *arguments],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def allow(ticks: int) -> None:
        # The publisher goes on only as far as allowed, so messages flow
        # during each fault however slowly the machine runs the faults.
        assert publisher.stdin is not None
        publisher.stdin.write(f"{ticks}\n")
        publisher.stdin.flush()

    dropped: list[int] = []

    def kill_and_start() -> None:
        server.kill()
        server.start()

    faults: list[tuple[str, Callable[[], object]]] = [
        (
            "the server closes the socket",
            lambda: page.evaluate(
                "() => { c.rt.request('close', { code: 1011 }).catch(() => {}); }"
            ),
        ),
        (
            "the page's socket closes",
            lambda: page.evaluate("() => t.tap.sockets.at(-1).close()"),
        ),
        ("the server restarts", server.restart),
        (
            "Redis drops the server's pub/sub connection",
            lambda: dropped.append(drop_server_connections(page, pubsub_only=True)),
        ),
        ("the server crashes and starts again", kill_and_start),
        (
            "Redis drops every server connection",
            lambda: dropped.append(drop_server_connections(page, pubsub_only=False)),
        ),
    ]
    shares = len(faults) + 3
    try:
        for number, (name, fault) in enumerate(faults, start=1):
            # Each fault once the page has caught up past a new share of the
            # messages, so that every one strikes while messages flow; the
            # last third is left for restarts that take longer than a share.
            allow(COUNT * (number + 1) // shares)
            wait(
                page,
                "(n) => c.rt.state === 'open' && got.publications.length >= n",
                COUNT * number // shares,
            )
            assert publisher.poll() is None, f"Published everything before {name!r}"
            fault()
        output, _ = publisher.communicate(timeout=COUNT / RATE + 60)
    finally:
        publisher.kill()
        publisher.wait()
        # A failed run must not leave its pipes for a later test's garbage
        # collection (a ResourceWarning there fails that test).
        for pipe in (publisher.stdin, publisher.stdout):
            if pipe is not None:
                pipe.close()
    assert publisher.returncode == 0
    assert output.strip() == "done"
    page.wait_for_function(
        "(n) => got.publications.length >= n", arg=COUNT, timeout=WAIT * 3
    )
    page.evaluate("() => c.rt.request('echo', null)")

    received = page.evaluate("got.publications.map((p) => p.data.n)")
    assert len(received) == COUNT, f"{len(received)} messages, expected {COUNT}"
    assert received == list(range(COUNT))
    assert page.evaluate("got.publications.map((p) => p.offset)") == list(
        range(1, COUNT + 1)
    )
    assert len(set(page.evaluate("got.publications.map((p) => p.epoch)"))) == 1
    assert page.evaluate("got.lost") == []
    # Redis closed the server's pub/sub connection, then two or more.
    assert len(dropped) == 2
    assert dropped[0] >= 1
    assert dropped[1] >= 2
    # The page reconnected after each of the four faults that cut it...
    opens = page.evaluate("c.states.filter((e) => e.state === 'open').length")
    assert opens >= 5
    # ...and subscribed again once each time: the server, not the client,
    # noticed what Redis lost and filled the gap.
    subscribes = page.evaluate("t.tap.sent.filter((f) => f.kind === 'subscribe')")
    assert len(subscribes) == opens
    resumes = page.evaluate("got.subscribed.slice(1)")
    assert all(info["recovered"] for info in resumes), resumes
