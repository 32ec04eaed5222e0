"""A hostile client cannot make one connection hold, read or send without bound.

Each test drives a :class:`StreamConsumer` in-process, through ASGI, the
way a client that sends what it likes and may stop reading would.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from django_realtime.streams import StreamConsumer, apublish, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable
from tests.integration.streams.asgi_client import Client

pytestmark = pytest.mark.timeout(10)


class Anything(StreamConsumer):
    """Allows every stream; one request handler; remembers its instances."""

    max_subscriptions = 5
    instances: ClassVar[list[Anything]] = []

    async def connect(self) -> None:
        self.instances.append(self)
        await self.accept()

    async def authorize_stream(self, stream: str) -> bool:
        return True

    async def request_echo(self, data: Any) -> Any:
        return data


class Paced(Anything):
    """Replays at most 10,000 bytes at once, then next to nothing."""

    replay_burst = 10_000
    replay_rate = 0.001


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore(PolicyTable({"*": {"max_count": 1000}}))
    old = set_stream_store(fresh)
    Anything.instances.clear()
    yield fresh
    set_stream_store(old)


async def test_unknown_request_types_are_not_remembered() -> None:
    client = Client(Anything)
    await client.open()
    for n in range(50):
        frame_id = client.send("request", type=f"no.such.type{n}")
        error = await client.frame()
        assert (error["id"], error["code"]) == (frame_id, "unknown_request")
    frame_id = client.send("request", type="echo", data=1)
    assert await client.frame() == {"kind": "reply", "id": frame_id, "data": 1}
    # Only the handler that exists is remembered.
    assert len(Anything._requests) == 1
    await client.close()


async def test_a_request_type_longer_than_the_limit_is_refused_briefly() -> None:
    client = Client(Anything)
    await client.open()
    frame_id = client.send("request", type="a" * 100_000)
    error = await client.frame()
    assert (error["id"], error["code"]) == (frame_id, "bad_frame")
    assert "at most 100 characters" in error["message"]
    assert len(error["message"]) < 1000
    assert "request_" + "a" * 100_000 not in Anything._requests
    await client.close()


@pytest.mark.parametrize(
    "content",
    [
        ["x" * 600_000],
        {"kind": "x" * 600_000, "id": 1},
        {"kind": "ping", "id": "\x00" * 150_000},
        {"kind": "request", "id": 1, "type": "\n" * 300_000},
        {"kind": "subscribe", "id": 1, "stream": "s" * 600_000},
        {"kind": "subscribe", "id": 1, "stream": "s", "since": ["\x1b"] * 100_000},
        {"kind": "subscribe", "id": 1, "stream": "s", "since": {"epoch": "e" * 9999}},
    ],
    ids=["list", "kind", "id", "type", "stream", "since", "epoch"],
)
async def test_an_error_frame_quotes_at_most_a_few_hundred_characters_of_the_input(
    content: Any,
) -> None:
    client = Client(Anything)
    await client.open()
    client.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(content)})
    error = await client.frame()
    assert (error["kind"], error["code"]) == ("error", "bad_frame")
    assert len(error["message"]) < 600, len(error["message"])
    assert "characters)" in error["message"]
    await client.close()


async def test_a_resume_position_with_a_long_epoch_is_refused() -> None:
    client = Client(Anything)
    await client.open()
    frame_id = client.send(
        "subscribe", stream="s", since={"epoch": "e" * 101, "offset": 1}
    )
    error = await client.frame()
    assert (error["id"], error["code"]) == (frame_id, "bad_frame")
    assert "epoch" in error["message"]
    await client.close()


async def test_client_values_in_log_lines_are_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client(Anything, path="/ws/\nFORGED line")
    await client.open()
    with caplog.at_level(logging.DEBUG, "django_realtime.streams"):
        client.send("launch")
        await client.frame()
    assert "Refused a frame on /ws/\\nFORGED line" in caplog.text
    assert "\nFORGED" not in caplog.text
    await client.close()


async def test_subscribes_and_unsubscribes_waiting_for_their_answer_are_bounded() -> (
    None
):
    client = Client(Anything)
    await client.open()
    client.send("subscribe", stream="s")
    assert (await client.frame())["kind"] == "subscribed"
    consumer = Anything.instances[0]
    pump = consumer._pump
    assert pump is not None
    # The client stops reading: the next publication's send waits for ever.
    client.reading.clear()
    await apublish("s", 1)
    for _ in range(1000):
        client.send("subscribe", stream="t")
        client.send("unsubscribe", stream="t")
    # Either every frame was taken (nothing bounds the queue), or the
    # consumer is stuck sending refusals too (the client's own frames wait).
    idle = asyncio.ensure_future(client.idle.wait())
    client.idle.clear()
    stuck = asyncio.ensure_future(client.stuck.wait())
    await asyncio.wait([idle, stuck], return_when=asyncio.FIRST_COMPLETED)
    idle.cancel()
    stuck.cancel()
    assert len(pump.events) <= 2 * Anything.max_subscriptions + 10
    client.reading.set()
    answers = [await client.frame() for _ in range(2001)]
    codes = {frame.get("code") for frame in answers if frame["kind"] == "error"}
    assert "too_many_pending" in codes
    await client.close()


async def test_replays_past_the_connections_budget_wait_and_live_delivery_goes_on(
    store: MemoryHistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    payload = "x" * 4000
    for stream in ("a", "b", "c"):
        for _ in range(5):
            await apublish(stream, payload)
    client = Client(Paced)
    await client.open()
    with caplog.at_level(logging.WARNING, "django_realtime.streams"):
        for stream in ("a", "b", "c"):
            epoch = (await store.read(stream)).epoch
            client.send("subscribe", stream=stream, since={"epoch": epoch, "offset": 0})
        subscribed = await client.frame()
        assert (subscribed["stream"], subscribed["replayed"]) == ("a", 5)
        for _ in range(5):
            assert (await client.frame())["stream"] == "a"
        # b and c would replay 40,000 bytes more: they wait, "a" goes on.
        await apublish("a", "live")
        live = await client.frame()
    assert (live["kind"], live["stream"], live["data"]) == ("publication", "a", "live")
    assert client.outbox.empty()
    assert caplog.text.count("Pacing the replays") == 1
    await client.close()
