"""The example chat page's multiplexed socket: the room, who is in it, jobs.

Through the chat's routes and the project's auth stack, as the page's
realtime.js uses them: one socket, ``/ws/chat/``, with the room's topic
(its stream and its presence) and the jobs consumer as topics.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.layers import InMemoryChannelLayer, channel_layers
from django_realtime.routing import URLRouter
from django_realtime.streams import set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.testing import WebsocketCommunicator
from example_project.chat.models import Room
from example_project.chat.routing import websocket_urlpatterns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

APPLICATION = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    old_store = set_stream_store(MemoryHistoryStore())
    old_layer = channel_layers.set("default", InMemoryChannelLayer())
    yield
    channel_layers.set("default", old_layer)
    set_stream_store(old_store)


class Page:
    """One room page's socket, speaking envelopes."""

    def __init__(self, ws: WebsocketCommunicator) -> None:
        self.ws = ws

    async def send(self, topic: str, kind: str, **fields: Any) -> None:
        await self.ws.send_json_to({"topic": topic, "kind": kind, **fields})

    async def receive(self) -> dict[str, Any]:
        text = await self.ws.receive_from(timeout=5)
        if text.startswith("{"):
            frame: dict[str, Any] = json.loads(text)
            return frame
        topic, _, payload = text.partition("\n")
        return {"topic": topic, "kind": "frame", "text": payload}

    async def stream_frame(self, topic: str) -> dict[str, Any]:
        """Return the next stream protocol frame of ``topic``."""
        frame = await self.receive()
        assert (frame["topic"], frame["kind"]) == (topic, "frame"), frame
        content: dict[str, Any] = json.loads(frame["text"])
        return content

    async def stream_send(self, topic: str, content: dict[str, Any]) -> None:
        await self.ws.send_to(text_data=f"{topic}\n{json.dumps(content)}")

    async def present(self, topic: str, stream: str) -> set[str]:
        """Return the usernames in the next presence diff of ``stream``."""
        while True:
            content = await self.stream_frame(topic)
            data = content.get("data") or {}
            if content.get("stream") == "presence:" + stream and "joins" in data:
                return {record["info"]["username"] for record in data["joins"].values()}


@pytest.fixture
async def open_page() -> AsyncIterator[Callable[[str], Any]]:
    pages: list[Page] = []

    async def open_page(username: str) -> Page:
        await User.objects.acreate_user(username, password=PASSWORD)
        client = AsyncClient()
        assert await client.alogin(username=username, password=PASSWORD)
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        ws = WebsocketCommunicator(APPLICATION, "/ws/chat/", [(b"cookie", cookie)])
        assert (await ws.connect())[0]
        page = Page(ws)
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        await page.ws.disconnect(timeout=5)


async def test_who_is_in_the_room_travels_on_the_rooms_topic(
    open_page: Callable[[str], Any],
) -> None:
    await Room.objects.aget_or_create(name="lobby")
    alice = await open_page("alice")
    await alice.send("chat/lobby", "open")
    assert await alice.receive() == {"topic": "chat/lobby", "kind": "open"}
    # The room's stream and its presence, on the same topic of one socket.
    for frame_id, stream in enumerate(("chat.lobby", "presence:chat.lobby"), 1):
        subscribe = {"kind": "subscribe", "id": frame_id, "stream": stream}
        await alice.stream_send("chat/lobby", subscribe)
        assert (await alice.stream_frame("chat/lobby"))["kind"] == "subscribed"

    bob = await open_page("bob")
    await bob.send("chat/lobby", "open")
    assert await bob.receive() == {"topic": "chat/lobby", "kind": "open"}
    subscribe = {"kind": "subscribe", "id": 1, "stream": "presence:chat.lobby"}
    await bob.stream_send("chat/lobby", subscribe)

    assert "bob" in await alice.present("chat/lobby", "chat.lobby")


async def test_a_room_nobody_created_is_refused_on_its_topic_only(
    open_page: Callable[[str], Any],
) -> None:
    alice = await open_page("alice")
    await alice.send("chat/nowhere", "open")
    assert await alice.receive() == {
        "topic": "chat/nowhere",
        "kind": "close",
        "code": 1006,
        "reason": "",
    }
    await alice.send("jobs", "open")
    assert await alice.receive() == {"topic": "jobs", "kind": "open"}
