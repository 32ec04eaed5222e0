"""Clients of the HTTP transports are members while they listen, in one process.

A long-polling client is a member while a poll is open and for the grace
period after; polls that follow one another keep it one member with one
connection, with no leave between them. A POST subscribe alone makes no
member. A WebSocket watcher sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import override_settings
from django.urls import include, path

from django_realtime.presence import amembers
from django_realtime.presence.api import get_tracker
from django_realtime.streams.http import stream_http_urls
from tests.integration.presence.helpers import Room, User, watch
from tests.integration.streams.http.test_views import Browser

pytestmark = pytest.mark.timeout(20)

GRACE = 0.3


class HttpRoom(Room):
    """The member is the user named in the URL."""

    channel_layer_alias = None

    def presence_member(self, stream: str) -> tuple[str, Any] | None:
        name = self.scope["url_route"]["kwargs"]["user"]
        return name, {"username": name}


urlpatterns = [path("rt/<str:user>/", include(stream_http_urls(HttpRoom)))]

APP = Room.as_asgi()


@pytest.fixture(autouse=True)
async def short_times() -> AsyncIterator[None]:
    presence = {"GRACE": GRACE, "EXPIRY": 2, "BATCH": 0.02}
    with override_settings(REALTIME={"PRESENCE": presence}, ROOT_URLCONF=__name__):
        yield
        await get_tracker().stop()


class Poller(Browser):
    """A long-polling client of ``/rt/<user>/``."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self.base = f"/rt/{user}/"
        self.positions: dict[str, list[Any]] = {}

    async def poll(self, timeout: float = 0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        query = {"positions": json.dumps(self.positions), "timeout": str(timeout)}
        if self.client:
            query["client"] = self.client
        url = self.base + "poll"
        status, content = await self.request("GET", url, urlencode(query))
        assert status == 200, content
        frames: list[dict[str, Any]] = content["frames"]
        for frame in frames:
            if frame["kind"] in ("publication", "subscribed", "lost"):
                self.positions[frame["stream"]] = [frame["epoch"], frame["offset"]]
        return frames

    async def post(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        status, content = await self.request(
            "POST", self.base, body=json.dumps(frame).encode()
        )
        assert status == 200, content
        frames: list[dict[str, Any]] = content["frames"]
        for frame in frames:
            if frame["kind"] == "subscribed":
                self.positions[frame["stream"]] = [frame["epoch"], frame["offset"]]
            elif frame["kind"] == "unsubscribed":
                del self.positions[frame["stream"]]
        return frames


async def test_a_polling_client_is_one_member_while_it_polls_and_leaves_once() -> None:
    watcher = await watch(APP, User(3, "carol"), "room.h")
    await watcher.until({"carol"})
    dave = Poller("dave")
    await dave.poll()
    (subscribed,) = await dave.post(
        {"kind": "subscribe", "id": 1, "stream": "presence:room.h"}
    )
    assert subscribed["kind"] == "subscribed"
    # Subscribed, not listening yet: not a member.
    await watcher.drain(GRACE * 2)
    assert watcher.names() == {"carol"}
    polling = asyncio.create_task(dave.poll(timeout=5))
    await watcher.until({"carol", "dave"})
    await polling
    # It follows presence over POST too.
    (reply,) = await dave.post(
        {
            "kind": "request",
            "id": 2,
            "type": "presence.members",
            "data": {"stream": "room.h"},
        }
    )
    assert reply["kind"] == "reply", reply
    assert set(reply["data"]["members"]) == {"3", "dave"}
    for _ in range(4):
        await dave.poll(timeout=GRACE / 3)
    await watcher.drain(0.05)
    assert (await amembers("room.h"))["dave"]["connections"] == 1
    assert not any("dave" in diff["leaves"] for diff in watcher.diffs)
    # It stops polling: it leaves once the grace period is over.
    await watcher.until({"carol"})
    assert sum("dave" in diff["leaves"] for diff in watcher.diffs) == 1
    assert sum("dave" in diff["joins"] for diff in watcher.diffs) == 1
    await watcher.client.close()


async def test_an_unsubscribe_over_post_leaves_after_the_grace_period() -> None:
    watcher = await watch(APP, User(3, "carol"), "room.i")
    dave = Poller("dave")
    await dave.poll()
    await dave.post({"kind": "subscribe", "id": 1, "stream": "presence:room.i"})
    await dave.poll()
    await watcher.until({"carol", "dave"})
    (unsubscribed,) = await dave.post(
        {"kind": "unsubscribe", "id": 2, "stream": "presence:room.i"}
    )
    assert unsubscribed["kind"] == "unsubscribed"
    # It goes on polling, without the presence stream.
    polling = asyncio.create_task(dave.poll(timeout=GRACE * 10))
    await watcher.until({"carol"})
    assert not polling.done()
    assert await polling == []
    await watcher.client.close()
