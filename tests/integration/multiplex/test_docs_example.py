"""The example of docs/topics/multiplexing.rst runs as written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from django_realtime.consumers import AsyncJsonWebsocketConsumer
from django_realtime.multiplex import multiplex
from django_realtime.streams import StreamConsumer
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class ClockConsumer(AsyncJsonWebsocketConsumer):
    """Answer the time in the zone the topic names."""

    async def connect(self) -> None:
        zone = self.scope["url_route"]["kwargs"]["zone"]
        if zone not in ("utc", "paris"):
            await self.close(4404, f"no zone {zone}")
            return
        await self.accept()

    async def receive_json(self, content: Any) -> None:
        await self.send_json({"zone": self.scope["topic"], "asked": content})


class FeedConsumer(StreamConsumer):
    async def authorize_stream(self, stream: str) -> bool:
        return stream == "ticks"

    async def request_echo(self, data: Any) -> Any:
        return data


APPLICATION = multiplex(
    {
        "clock/<slug:zone>": ClockConsumer.as_asgi(),
        "feed": FeedConsumer.as_asgi(),
    }
)


async def test_the_clock_answers_on_its_topic() -> None:
    ws = WebsocketCommunicator(APPLICATION, "/ws/")
    assert (await ws.connect())[0]
    await ws.send_json_to({"topic": "clock/utc", "kind": "open"})
    assert await ws.receive_json_from() == {"topic": "clock/utc", "kind": "open"}
    await ws.send_to(text_data="clock/utc\n1")
    topic, _, text = (await ws.receive_from()).partition("\n")
    assert (topic, json.loads(text)) == ("clock/utc", {"zone": "clock/utc", "asked": 1})
    await ws.send_json_to({"topic": "clock/mars", "kind": "open"})
    assert await ws.receive_json_from() == {
        "topic": "clock/mars",
        "kind": "close",
        "code": 4404,
        "reason": "no zone mars",
    }
    await ws.send_json_to({"topic": "feed", "kind": "open"})
    assert await ws.receive_json_from() == {"topic": "feed", "kind": "open"}
    request = {"kind": "request", "id": 1, "type": "echo", "data": {"on": "it"}}
    await ws.send_to(text_data="feed\n" + json.dumps(request))
    reply = json.loads((await ws.receive_from()).removeprefix("feed\n"))
    assert reply == {"kind": "reply", "id": 1, "data": {"on": "it"}}
    await ws.disconnect()
