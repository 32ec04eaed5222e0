"""A long-poll whose client is behind lingers to carry what follows.

A poll that finds frames published after its client's positions waits up
to ``poll_linger`` for more, so one response carries a busy stream's next
frames; a poll that had to wait for its first frame (a quiet stream)
returns it at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.test import override_settings
from django.urls import include, path

from django_realtime.streams import set_stream_store
from django_realtime.streams.http import stream_http_urls
from django_realtime.streams.http.views import StreamHttpViews
from django_realtime.streams.stores import MemoryHistoryStore
from tests.integration.streams.http.test_views import Browser, Chat

pytestmark = pytest.mark.timeout(20)

urlpatterns = [
    path("rt/", include(stream_http_urls(Chat, poll_linger=1.0))),
    path("eager/", include(stream_http_urls(Chat, poll_linger=0))),
]


@pytest.fixture
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    with override_settings(ROOT_URLCONF=__name__):
        yield fresh
    set_stream_store(old)


async def _subscribed(browser: Browser) -> str:
    await browser.start()
    (subscribed,) = await browser.post(
        {"kind": "subscribe", "id": 1, "stream": "room.b"}
    )
    epoch: str = subscribed["epoch"]
    return epoch


def _query(browser: Browser, epoch: str, offset: int) -> str:
    positions = json.dumps({"room.b": [epoch, offset]})
    return urlencode({"client": browser.client, "positions": positions, "timeout": "5"})


async def _publish_later(store: MemoryHistoryStore, numbers: range) -> None:
    for n in numbers:
        await asyncio.sleep(0.05)
        await store.publish("room.b", json.dumps({"n": n}))


@pytest.mark.parametrize(("prefix", "offsets"), [("rt", [1, 2, 3]), ("eager", [1])])
async def test_a_poll_behind_its_stream_carries_what_is_published_within_the_linger(
    store: MemoryHistoryStore, prefix: str, offsets: list[int]
) -> None:
    browser = Browser()
    epoch = await _subscribed(browser)
    await store.publish("room.b", json.dumps({"n": 0}))  # the client is behind
    later = asyncio.create_task(_publish_later(store, range(1, 3)))
    status, content = await browser.request(
        "GET", f"/{prefix}/poll", _query(browser, epoch, 0)
    )
    await later
    assert status == 200
    assert [f["offset"] for f in content["frames"]] == offsets


async def test_a_quiet_streams_frame_is_not_held_for_the_linger(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    epoch = await _subscribed(browser)
    later = asyncio.create_task(_publish_later(store, range(1)))
    started = time.monotonic()
    status, content = await browser.request(
        "GET", "/rt/poll", _query(browser, epoch, 0)
    )
    elapsed = time.monotonic() - started
    await later
    assert status == 200
    assert [f["offset"] for f in content["frames"]] == [1]
    # The linger is a second: the frame came back well before it ended.
    assert elapsed < 0.9


@pytest.mark.parametrize("linger", [-0.01, 1.5, 30.0])
def test_a_linger_out_of_range_is_refused(linger: float) -> None:
    with pytest.raises(ValueError, match="poll_linger"):
        StreamHttpViews(Chat, poll_linger=linger)


async def test_polls_keep_the_pages_csrf_cookie(store: MemoryHistoryStore) -> None:
    # Without CsrfViewMiddleware in the project, as in the test settings: a
    # new cookie on every poll would fail a POST sent with the last token.
    browser = Browser()
    await browser.start()
    cookie = browser.cookies["csrftoken"]
    status, _ = await browser.request(
        "GET", "/rt/poll", urlencode({"client": browser.client, "timeout": "0"})
    )
    assert status == 200
    assert browser.cookies["csrftoken"] == cookie
    (pong,) = await browser.post({"kind": "ping", "id": 1})
    assert pong["kind"] == "pong"
