"""A multiplexed socket, driven with the communicator: topics, faults, limits."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_realtime.layers import InMemoryChannelLayer, channel_layers
from django_realtime.multiplex import Multiplexer, multiplex
from django_realtime.streams import apublish, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable
from django_realtime.testing import WebsocketCommunicator

from .consumers import (
    DISCONNECTS,
    Echo,
    Faulty,
    Feed,
    Room,
    Small,
    SyncEcho,
    Waiting,
)

pytestmark = pytest.mark.timeout(10)

ROUTES = {
    "echo": Echo.as_asgi(),
    "echo/<int:n>": Echo.as_asgi(),
    "sync": SyncEcho.as_asgi(),
    "room/<slug:room>": Room.as_asgi(),
    "faulty": Faulty.as_asgi(),
    "small": Small.as_asgi(),
    "feed": Feed.as_asgi(),
    "waiting": Waiting.as_asgi(),
}


@pytest.fixture(autouse=True)
def layer() -> Iterator[InMemoryChannelLayer]:
    fresh = InMemoryChannelLayer()
    old = channel_layers.set("default", fresh)
    DISCONNECTS.clear()
    yield fresh
    channel_layers.set("default", old)


def decode(text: str) -> dict[str, Any]:
    """Return a server's text frame as a dict; a data frame as kind ``frame``."""
    if text.startswith("{"):
        frame: dict[str, Any] = json.loads(text)
        return frame
    topic, separator, payload = text.partition("\n")
    assert separator, f"Expected a data frame, got {text!r}."
    return {"topic": topic, "kind": "frame", "text": payload}


class Client:
    """A communicator that speaks envelopes."""

    def __init__(self, ws: WebsocketCommunicator) -> None:
        self.ws = ws

    async def send(self, topic: str, kind: str, **fields: Any) -> None:
        await self.ws.send_json_to({"topic": topic, "kind": kind, **fields})

    async def frame(self, topic: str, text: str) -> None:
        await self.ws.send_to(text_data=f"{topic}\n{text}")

    async def receive(self) -> dict[str, Any]:
        return decode(await self.ws.receive_from(timeout=3))

    async def open(self, topic: str) -> dict[str, Any]:
        await self.send(topic, "open")
        return await self.receive()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    ws = WebsocketCommunicator(multiplex(ROUTES, max_topics=4), "/ws/")
    assert await ws.connect() == (True, None)
    yield Client(ws)
    await ws.disconnect(1001, timeout=3)


async def test_topics_open_echo_and_close_on_one_socket(client: Client) -> None:
    assert await client.open("echo") == {"topic": "echo", "kind": "open"}
    assert await client.open("sync") == {"topic": "sync", "kind": "open"}
    await client.frame("echo", 'héllo "you"')
    await client.frame("sync", "hi")
    frames = [await client.receive(), await client.receive()]
    assert {"topic": "echo", "kind": "frame", "text": 'héllo "you"'} in frames
    assert {"topic": "sync", "kind": "frame", "text": "sync hi"} in frames
    await client.send("echo", "close", code=4001)
    await client.frame("sync", "still")
    assert await client.receive() == {
        "topic": "sync",
        "kind": "frame",
        "text": "sync still",
    }
    assert ("Echo", "echo", 4001) in DISCONNECTS


async def test_a_consumer_busy_in_its_handler_holds_up_no_other_topic(
    client: Client,
) -> None:
    Waiting.go = asyncio.Event()
    await client.open("waiting")
    await client.open("echo")
    await client.frame("waiting", "wait")
    for n in range(3):
        await client.frame("echo", str(n))
        assert (await client.receive())["text"] == str(n)
    Waiting.go.set()
    assert (await client.receive())["text"] == "went on"


async def test_a_ping_is_answered_with_a_pong(client: Client) -> None:
    await client.ws.send_json_to({"kind": "ping"})
    assert await client.receive() == {"kind": "pong"}


async def test_a_closed_topic_can_be_opened_again(client: Client) -> None:
    await client.open("echo")
    await client.send("echo", "close")
    assert await client.open("echo") == {"topic": "echo", "kind": "open"}
    await client.frame("echo", "again")
    assert (await client.receive())["text"] == "again"


async def test_binary_frames_carry_the_topic_in_a_header(client: Client) -> None:
    await client.open("echo/7")
    await client.ws.send_to(bytes_data=b"\x06echo/7\x00\x01binary")
    assert await client.ws.receive_from() == b"\x06echo/7\x00\x01binary"


async def test_the_consumer_closing_ends_its_topic_only(client: Client) -> None:
    await client.open("echo")
    await client.open("sync")
    await client.frame("echo", "close")
    assert await client.receive() == {
        "topic": "echo",
        "kind": "close",
        "code": 4000,
        "reason": "asked to",
    }
    await client.frame("echo", "after")
    assert (await client.receive())["code"] == "not_open"
    await client.frame("sync", "x")
    assert (await client.receive())["text"] == "sync x"
    await client.ws.disconnect(1001, timeout=3)
    assert ("Echo", "echo", 4000) in DISCONNECTS
    assert ("SyncEcho", "sync", 1001) in DISCONNECTS


async def test_captured_values_reach_the_consumer_and_authorise_it(
    client: Client,
) -> None:
    assert await client.open("room/open") == {"topic": "room/open", "kind": "open"}
    await client.frame("room/open", "{}")
    assert json.loads((await client.receive())["text"]) == {"room": "open"}
    assert await client.open("room/secret") == {
        "topic": "room/secret",
        "kind": "close",
        "code": 4403,
        "reason": "not a member of secret",
    }
    assert await client.open("room/denied") == {
        "topic": "room/denied",
        "kind": "close",
        "code": 1006,
        "reason": "",
    }


async def test_groups_and_layer_handlers_work_per_child(
    client: Client, layer: InMemoryChannelLayer
) -> None:
    await client.open("room/open")
    await client.open("room/other")
    await client.open("echo")
    await client.open("echo/1")
    await client.frame("echo", "who")
    await client.frame("echo/1", "who")
    first = (await client.receive())["text"].split()
    second = (await client.receive())["text"].split()
    assert first[0] != second[0]  # a channel each
    assert first[1] != second[1]  # a correlation id each
    await layer.group_send("rooms", {"type": "room.news", "text": "hi"})
    news = [json.loads((await client.receive())["text"]) for _ in range(2)]
    assert sorted(item["topic"] for item in news) == ["room/open", "room/other"]


async def test_a_consumer_closing_from_a_layer_handler_gets_its_disconnect_at_once(
    client: Client, layer: InMemoryChannelLayer
) -> None:
    Room.gone = asyncio.Event()
    await client.open("room/open")
    # After a frame, the consumer itself reads the socket while it waits.
    await client.frame("room/open", "{}")
    await client.receive()
    await layer.group_send("rooms", {"type": "room.kick"})
    assert await client.receive() == {
        "topic": "room/open",
        "kind": "close",
        "code": 4009,
        "reason": "kicked",
    }
    await asyncio.wait_for(Room.gone.wait(), 3)
    assert ("Room", "room/open", 4009) in DISCONNECTS
    assert await client.open("echo") == {"topic": "echo", "kind": "open"}


async def test_a_failing_consumer_closes_its_topic_with_1011_and_drops_what_it_held(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await client.open("faulty")
    await client.open("echo")
    with caplog.at_level(logging.ERROR, "django_realtime.multiplex"):
        await client.frame("faulty", "go")
        assert await client.receive() == {
            "topic": "faulty",
            "kind": "close",
            "code": 1011,
            "reason": "",
        }
    assert "Topic faulty on WebSocket /ws/ failed" in caplog.text
    assert ("Faulty", "faulty", 1011) in DISCONNECTS
    await client.frame("echo", "fine")
    assert (await client.receive())["text"] == "fine"


async def test_a_frame_over_the_consumers_limit_closes_its_topic_with_1009(
    client: Client,
) -> None:
    await client.open("small")
    await client.frame("small", "x" * 11)
    assert (await client.receive())["code"] == 1009
    await client.open("echo")
    await client.frame("echo", "ok")
    assert (await client.receive())["text"] == "ok"


@pytest.mark.parametrize(
    ("frame", "code", "topic"),
    [
        ("no line feed", "bad_envelope", None),
        ("\nno topic", "bad_envelope", None),
        ("{not json", "bad_envelope", None),
        ("[1]", "bad_envelope", None),
        ("a b\nx", "bad_envelope", None),
        ('{"topic": "a b", "kind": "open"}', "bad_envelope", None),
        ('{"topic": "echo", "kind": "jump"}', "bad_envelope", "echo"),
        ('{"topic": "echo", "kind": "frame", "text": 1}', "bad_envelope", "echo"),
        ('{"topic": "echo", "kind": "close", "code": 1006}', "bad_envelope", "echo"),
        ('{"topic": "nowhere", "kind": "open"}', "unknown_topic", "nowhere"),
        ('{"topic": "echo", "kind": "frame", "text": "x"}', "bad_envelope", "echo"),
        ("echo\nx", "not_open", "echo"),
        ("echo\n", "not_open", "echo"),
        ('{"topic": "echo", "kind": "close"}', "not_open", "echo"),
    ],
)
async def test_bad_input_gets_an_error_frame_and_the_socket_stays(
    client: Client, frame: str, code: str, topic: str | None
) -> None:
    await client.ws.send_to(text_data=frame)
    error = await client.receive()
    assert (error["kind"], error["code"], error["topic"]) == ("error", code, topic)
    assert error["message"]
    assert await client.open("echo") == {"topic": "echo", "kind": "open"}


async def test_a_bad_binary_header_gets_an_error_frame(client: Client) -> None:
    await client.ws.send_to(bytes_data=b"\x09echo")
    assert (await client.receive())["code"] == "bad_envelope"
    await client.ws.send_to(bytes_data=b"\x04echo!")
    assert (await client.receive())["code"] == "not_open"


async def test_an_open_twice_and_over_the_topic_limit_are_refused(
    client: Client,
) -> None:
    await client.open("echo")
    assert (await client.open("echo"))["code"] == "already_open"
    for n in range(3):
        await client.open(f"echo/{n}")
    refused = await client.open("sync")
    assert (refused["kind"], refused["code"]) == ("error", "too_many_topics")
    await client.send("echo/0", "close")
    assert await client.open("sync") == {"topic": "sync", "kind": "open"}


async def test_a_topic_that_falls_behind_is_closed_with_4008() -> None:
    Waiting.go = asyncio.Event()
    ws = WebsocketCommunicator(Multiplexer(ROUTES, max_queued_frames=2), "/ws/")
    await ws.connect()
    client = Client(ws)
    await client.open("waiting")
    await client.open("echo")
    # The first frame holds the consumer up; two wait; the fourth is too many.
    for n in range(4):
        await client.frame("waiting", str(n))
    assert await client.receive() == {
        "topic": "waiting",
        "kind": "close",
        "code": 4008,
        "reason": "",
    }
    await client.frame("echo", "still here")
    assert (await client.receive())["text"] == "still here"
    Waiting.go.set()
    await ws.disconnect(timeout=3)


async def test_streams_resume_inside_a_topic() -> None:
    store = MemoryHistoryStore(PolicyTable({"*": {"max_count": 5}}))
    old = set_stream_store(store)
    try:
        ws = WebsocketCommunicator(multiplex(ROUTES), "/ws/")
        await ws.connect()
        client = Client(ws)
        await client.open("feed")
        subscribe = {"kind": "subscribe", "id": 1, "stream": "feed"}
        await client.frame("feed", json.dumps(subscribe))
        subscribed = json.loads((await client.receive())["text"])
        assert subscribed["kind"] == "subscribed"
        await apublish("feed", {"n": 1})
        publication = json.loads((await client.receive())["text"])
        assert publication["data"] == {"n": 1}
        await ws.disconnect(1006, timeout=3)
        await apublish("feed", {"n": 2})

        ws = WebsocketCommunicator(multiplex(ROUTES), "/ws/")
        await ws.connect()
        client = Client(ws)
        await client.open("feed")
        since = {"epoch": publication["epoch"], "offset": publication["offset"]}
        await client.frame("feed", json.dumps({**subscribe, "since": since}))
        assert json.loads((await client.receive())["text"])["recovered"] is True
        replayed = json.loads((await client.receive())["text"])
        assert replayed["data"] == {"n": 2}
        request = {"kind": "request", "id": 2, "type": "echo", "data": [1]}
        await client.frame("feed", json.dumps(request))
        assert json.loads((await client.receive())["text"])["data"] == [1]
        await ws.disconnect(timeout=3)
    finally:
        set_stream_store(old)


def test_bad_routes_and_limits_are_refused_when_the_routes_load() -> None:
    with pytest.raises(ImproperlyConfigured, match="ASGI application"):
        multiplex({"echo": "Echo"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="max_topics of at least 1"):
        multiplex(ROUTES, max_topics=0)
