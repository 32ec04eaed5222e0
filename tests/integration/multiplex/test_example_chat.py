"""The example chat page's multiplexed socket: the room, who is online, jobs.

Through the chat's routes and the project's auth stack, as the page's
realtime.js uses them: one socket, ``/ws/chat/``, with the room's stream,
the online badge's consumer and the jobs consumer as topics.
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
def _isolated(settings: Any) -> Iterator[None]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
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

    async def online(self) -> list[str]:
        frame = await self.receive()
        assert frame["topic"].startswith("online/"), frame
        names: list[str] = json.loads(frame["text"])["online"]
        return names


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


async def test_the_online_badge_and_the_room_share_the_pages_socket(
    open_page: Callable[[str], Any],
) -> None:
    await Room.objects.aget_or_create(name="lobby")
    alice = await open_page("alice")
    await alice.send("chat/lobby", "open")
    assert await alice.receive() == {"topic": "chat/lobby", "kind": "open"}
    await alice.send("online/lobby", "open")
    assert await alice.receive() == {"topic": "online/lobby", "kind": "open"}
    assert await alice.online() == ["alice"]

    bob = await open_page("bob")
    await bob.send("online/lobby", "open")
    assert await bob.receive() == {"topic": "online/lobby", "kind": "open"}
    names = [await bob.online(), await bob.online()]
    assert names[-1] == ["alice", "bob"]
    assert await alice.online() == ["alice", "bob"]

    await bob.send("online/lobby", "close")
    assert await alice.online() == ["alice"]

    # The room's stream, on the same socket.
    subscribe = {"kind": "subscribe", "id": 1, "stream": "chat.lobby"}
    await alice.ws.send_to(text_data="chat/lobby\n" + json.dumps(subscribe))
    answer = await alice.receive()
    assert json.loads(answer["text"])["kind"] == "subscribed"


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
