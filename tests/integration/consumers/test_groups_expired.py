"""A consumer busy for longer than the layer's expiry is told it lost its groups.

The layer takes a channel whose oldest message expired unread out of its
groups (its reader looks gone). A reader that was only slow, say blocked in
a send to a client that does not read, learns it on its next receive: a
WebSocket consumer closes with 4008 so that its client reconnects and joins
again; another consumer joins its groups again, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from django_realtime.consumers import AsyncConsumer, AsyncWebsocketConsumer
from django_realtime.layers import InMemoryChannelLayer, channel_layers
from django_realtime.testing import ApplicationCommunicator, WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)

EXPIRY = 0.2


@pytest.fixture
def layer() -> Iterator[InMemoryChannelLayer]:
    fresh = InMemoryChannelLayer(expiry=EXPIRY)
    old = channel_layers.set("default", fresh)
    yield fresh
    channel_layers.set("default", old)


async def test_a_websocket_consumer_busy_past_the_expiry_closes_with_4008(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    class Member(AsyncWebsocketConsumer):
        groups = ["room"]

        async def receive(
            self, text_data: str | None = None, bytes_data: Any = None
        ) -> None:
            await release.wait()  # as a send to a client that does not read

        async def news(self, message: dict[str, Any]) -> None:
            await self.send(text_data=message["text"])

    communicator = WebsocketCommunicator(Member.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="block")
    await asyncio.sleep(0.05)
    # The consumer's layer reader takes the first and waits for its turn;
    # the second waits in the layer, and expires.
    await layer.group_send("room", {"type": "news", "text": "one"})
    await layer.group_send("room", {"type": "news", "text": "two"})
    await asyncio.sleep(EXPIRY + 0.05)
    # This send finds "two" expired: the member leaves the group.
    await layer.group_send("room", {"type": "news", "text": "three"})
    with caplog.at_level(logging.WARNING, "django_realtime"):
        release.set()
        assert await communicator.receive_from(timeout=2) == "one"
        output = await communicator.receive_output(timeout=2)
    assert output == {"type": "websocket.close", "code": 4008}
    assert "taken out of its groups ['room']" in caplog.text
    await communicator.send_input({"type": "websocket.disconnect", "code": 4008})
    await communicator.wait(timeout=2)


async def test_another_consumer_joins_its_groups_again(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    seen: list[str] = []
    progress = asyncio.Event()

    class Worker(AsyncConsumer):
        async def start(self, message: dict[str, Any]) -> None:
            await self.channel_layer.group_add("jobs", self.channel_name)
            seen.append("started")
            progress.set()

        async def job(self, message: dict[str, Any]) -> None:
            if message["n"] == 1:
                await release.wait()
            seen.append(f"job {message['n']}")
            progress.set()

    async def next_step() -> None:
        await asyncio.wait_for(progress.wait(), 2)
        progress.clear()

    communicator = ApplicationCommunicator(Worker.as_asgi(), {"type": "channel"})
    await communicator.send_input({"type": "start"})
    await next_step()
    await layer.group_send("jobs", {"type": "job", "n": 1})  # blocks the worker
    await asyncio.sleep(0.05)
    await layer.group_send("jobs", {"type": "job", "n": 2})  # expires unread
    await asyncio.sleep(EXPIRY + 0.05)
    await layer.group_send("jobs", {"type": "job", "n": 3})  # lost: out of the group
    with caplog.at_level(logging.WARNING, "django_realtime"):
        release.set()
        await next_step()
        await asyncio.sleep(0.05)  # the reader meets GroupsExpired, joins again
    assert "Joining them again; messages sent to them meanwhile are lost" in caplog.text
    await layer.group_send("jobs", {"type": "job", "n": 4})
    await next_step()
    assert seen == ["started", "job 1", "job 4"]
    communicator.stop()
