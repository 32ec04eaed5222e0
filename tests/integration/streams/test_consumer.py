"""StreamConsumer in-process: the stream protocol as a client sees it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from django_realtime.streams import (
    RequestError,
    StreamConsumer,
    apublish,
    set_stream_store,
)
from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class Feed(StreamConsumer):
    """Allows streams that do not start with "secret"."""

    max_subscriptions = 3
    asked: list[str] = []

    async def authorize_stream(self, stream: str) -> bool:
        self.asked.append(stream)
        return not stream.startswith("secret")

    async def request_echo(self, data: Any) -> Any:
        return data

    async def request_post(self, data: Any) -> dict[str, Any]:
        await apublish(data["stream"], {"type": "posted", "text": data["text"]})
        if data.get("refuse"):
            raise RequestError("too_rude", "Mind your language.")
        if data.get("crash"):
            raise KeyError("boom")
        return {"ok": True}

    def request_sync_add(self, data: Any) -> int:
        return int(data[0]) + int(data[1])

    async def request_unserialisable(self, data: Any) -> Any:
        return object()


class SyncAuthorized(StreamConsumer):
    def authorize_stream(self, stream: str) -> bool:  # type: ignore[override]
        return stream == "open"


@pytest.fixture
def store() -> Iterator[MemoryHistoryStore]:
    """Use a fresh in-memory store (history of 5) for the test."""
    fresh = MemoryHistoryStore(PolicyTable({"*": {"max_count": 5}}))
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


class Client:
    """A communicator that numbers its frames."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.next_id = 0

    async def send(self, kind: str, **fields: Any) -> int:
        self.next_id += 1
        await self.ws.send_json_to({"kind": kind, "id": self.next_id, **fields})
        return self.next_id

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = await self.ws.receive_json_from(timeout=3)
        return frame

    async def subscribe(self, stream: str, **fields: Any) -> dict[str, Any]:
        frame_id = await self.send("subscribe", stream=stream, **fields)
        frame = await self.receive()
        assert frame["id"] == frame_id, frame
        return frame

    async def publications(self, count: int) -> list[dict[str, Any]]:
        frames = [await self.receive() for _ in range(count)]
        assert all(frame["kind"] == "publication" for frame in frames), frames
        return frames


@pytest.fixture
async def client(store: MemoryHistoryStore) -> AsyncIterator[Client]:
    communicator = WebsocketCommunicator(Feed.as_asgi(), "/ws/feed/")
    connected, _ = await communicator.connect()
    assert connected
    yield Client(communicator)
    await communicator.disconnect()


async def test_a_stream_is_refused_unless_the_application_allows_it(
    store: MemoryHistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = WebsocketCommunicator(StreamConsumer.as_asgi(), "/ws/")
    await communicator.connect()
    client = Client(communicator)
    with caplog.at_level(logging.DEBUG, "django_realtime.streams"):
        frame = await client.subscribe("anything")
    assert frame["kind"] == "error"
    assert frame["code"] == "forbidden"
    assert "forbidden" in caplog.text
    assert await client.subscribe("other") == {
        **frame,
        "id": 2,
        "message": frame["message"].replace("anything", "other"),
    }
    await communicator.disconnect()


async def test_a_sync_authorize_hook_is_asked_too(store: MemoryHistoryStore) -> None:
    communicator = WebsocketCommunicator(SyncAuthorized.as_asgi(), "/ws/")
    await communicator.connect()
    client = Client(communicator)
    assert (await client.subscribe("open"))["kind"] == "subscribed"
    assert (await client.subscribe("closed"))["code"] == "forbidden"
    await communicator.disconnect()


async def test_subscribers_get_publications_in_order_from_the_newest_position(
    client: Client, store: MemoryHistoryStore
) -> None:
    await apublish("news", {"n": 0})
    subscribed = await client.subscribe("news")
    assert subscribed["kind"] == "subscribed"
    assert subscribed["offset"] == 1
    assert subscribed["recovered"] is False
    assert subscribed["reason"] is None
    assert subscribed["replayed"] == 0
    for n in range(1, 4):
        await apublish("news", {"n": n})
    frames = await client.publications(3)
    assert [(f["offset"], f["data"]["n"]) for f in frames] == [(2, 1), (3, 2), (4, 3)]
    assert {f["epoch"] for f in frames} == {subscribed["epoch"]}
    assert {f["stream"] for f in frames} == {"news"}


async def test_a_resume_replays_what_was_missed_then_continues_live(
    client: Client, store: MemoryHistoryStore
) -> None:
    first = await store.publish("news", '"a"')
    for text in ("b", "c", "d"):
        await apublish("news", text)
    subscribed = await client.subscribe(
        "news", since={"epoch": first.epoch, "offset": 1}
    )
    assert subscribed["recovered"] is True
    assert subscribed["replayed"] == 3
    assert subscribed["offset"] == 4
    await apublish("news", "e")
    frames = await client.publications(4)
    assert [(f["offset"], f["data"]) for f in frames] == [
        (2, "b"),
        (3, "c"),
        (4, "d"),
        (5, "e"),
    ]


async def test_publications_during_the_replay_come_once_and_in_order(
    client: Client, store: MemoryHistoryStore
) -> None:
    first = await store.publish("busy", "0")

    async def publisher() -> None:
        for n in range(1, 40):
            await apublish("busy", n)
            await asyncio.sleep(0)

    task = asyncio.create_task(publisher())
    subscribed = await client.subscribe(
        "busy", since={"epoch": first.epoch, "offset": 0}
    )
    await task
    # The window keeps 5: a resume from 0 may or may not be recovered,
    # depending on how far the publisher got; either way, what follows is
    # consecutive and reaches 40 once.
    start = 0 if subscribed["recovered"] else subscribed["offset"]
    frames = await client.publications(40 - start)
    assert [f["offset"] for f in frames] == list(range(start + 1, 41))
    await client.ws.receive_nothing(0.1)


async def test_a_resume_from_lost_history_says_why(
    client: Client, store: MemoryHistoryStore
) -> None:
    old = await store.publish("news", "1")
    await store.flush()
    await apublish("news", "2")
    subscribed = await client.subscribe("news", since={"epoch": old.epoch, "offset": 1})
    assert subscribed["recovered"] is False
    assert subscribed["reason"] == "epoch_changed"
    assert subscribed["replayed"] == 0
    assert subscribed["epoch"] != old.epoch
    assert subscribed["offset"] == 1
    for n in range(7):
        await apublish("news", n)
    await client.publications(7)
    outside = await client.subscribe("other")
    assert outside["kind"] == "subscribed"


async def test_a_resume_from_outside_the_window_says_so(
    client: Client, store: MemoryHistoryStore
) -> None:
    first = await store.publish("news", "1")
    for n in range(7):
        await apublish("news", n)
    subscribed = await client.subscribe(
        "news", since={"epoch": first.epoch, "offset": 1}
    )
    assert subscribed["recovered"] is False
    assert subscribed["reason"] == "outside_window"
    assert subscribed["offset"] == 8


async def test_a_lost_announcement_is_noticed_at_the_next_and_replayed(
    client: Client, store: MemoryHistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    await client.subscribe("news")
    # Publish without announcing, as a lost Redis pub/sub message would.
    store._window("news").append('"missed"', store.policies("news"), store.clock())
    with caplog.at_level(logging.INFO, "django_realtime.streams"):
        await apublish("news", "next")
        frames = await client.publications(2)
    assert [(f["offset"], f["data"]) for f in frames] == [(1, "missed"), (2, "next")]
    assert "Gap in news" in caplog.text


async def test_a_resync_catches_up_without_a_new_publication(
    client: Client, store: MemoryHistoryStore
) -> None:
    await client.subscribe("news")
    store._window("news").append('"missed"', store.policies("news"), store.clock())
    store.hub.resync()
    (frame,) = await client.publications(1)
    assert (frame["offset"], frame["data"]) == (1, "missed")


async def test_history_lost_while_subscribed_is_reported_in_a_lost_frame(
    client: Client, store: MemoryHistoryStore
) -> None:
    subscribed = await client.subscribe("news")
    await apublish("news", "1")
    await client.publications(1)
    await store.flush()
    await apublish("news", "after flush")
    lost = await client.receive()
    assert lost["kind"] == "lost"
    assert lost["reason"] == "epoch_changed"
    assert lost["epoch"] != subscribed["epoch"]
    assert lost["offset"] == 1
    await apublish("news", "next")
    (frame,) = await client.publications(1)
    assert (frame["epoch"], frame["offset"], frame["data"]) == (
        lost["epoch"],
        2,
        "next",
    )


async def test_unsubscribe_stops_the_stream(
    client: Client, store: MemoryHistoryStore
) -> None:
    await client.subscribe("news")
    await client.subscribe("other")
    frame_id = await client.send("unsubscribe", stream="news")
    assert await client.receive() == {
        "kind": "unsubscribed",
        "id": frame_id,
        "stream": "news",
    }
    await apublish("news", "unseen")
    await apublish("other", "seen")
    (frame,) = await client.publications(1)
    assert frame["stream"] == "other"
    assert "news" not in store.hub
    again = await client.send("unsubscribe", stream="news")
    error = await client.receive()
    assert (error["id"], error["code"]) == (again, "not_subscribed")


async def test_subscribing_twice_or_too_often_is_an_error(client: Client) -> None:
    await client.subscribe("a")
    assert (await client.subscribe("a"))["code"] == "already_subscribed"
    await client.subscribe("b")
    await client.subscribe("c")
    assert (await client.subscribe("d"))["code"] == "too_many_subscriptions"


async def test_authorization_is_asked_again_on_every_subscribe(
    store: MemoryHistoryStore,
) -> None:
    Feed.asked = []
    for _ in range(2):
        communicator = WebsocketCommunicator(Feed.as_asgi(), "/ws/")
        await communicator.connect()
        client = Client(communicator)
        await client.subscribe("news", since={"epoch": "x", "offset": 0})
        assert (await client.subscribe("secret.plans"))["code"] == "forbidden"
        await communicator.disconnect()
    assert Feed.asked == ["news", "secret.plans"] * 2


async def test_requests_get_replies_with_their_id(client: Client) -> None:
    frame_id = await client.send("request", type="echo", data={"x": [1, 2]})
    assert await client.receive() == {
        "kind": "reply",
        "id": frame_id,
        "data": {"x": [1, 2]},
    }
    frame_id = await client.send("request", type="sync.add", data=[2, 3])
    assert await client.receive() == {"kind": "reply", "id": frame_id, "data": 5}


async def test_a_request_handler_publishes_when_it_succeeds(
    client: Client, store: MemoryHistoryStore
) -> None:
    await client.subscribe("room")
    frame_id = await client.send(
        "request", type="post", data={"stream": "room", "text": "hi"}
    )
    frames = [await client.receive(), await client.receive()]
    assert {"kind": "reply", "id": frame_id, "data": {"ok": True}} in frames
    (publication,) = [f for f in frames if f["kind"] == "publication"]
    assert publication["data"] == {"type": "posted", "text": "hi"}


@pytest.mark.parametrize(
    ("flag", "code", "message"),
    [
        ("refuse", "too_rude", "Mind your language."),
        ("crash", "request_failed", "internal error"),
    ],
)
async def test_a_failed_request_is_answered_with_an_error_and_publishes_nothing(
    client: Client,
    store: MemoryHistoryStore,
    caplog: pytest.LogCaptureFixture,
    flag: str,
    code: str,
    message: str,
) -> None:
    await client.subscribe("room")
    data = {"stream": "room", "text": "hi", flag: True}
    with caplog.at_level(logging.INFO):
        frame_id = await client.send("request", type="post", data=data)
        assert await client.receive() == {
            "kind": "error",
            "id": frame_id,
            "code": code,
            "message": message,
        }
    await client.ws.receive_nothing(0.1)
    assert (await store.read("room")).offset == 0
    if flag == "crash":
        assert "Request 'post' on /ws/feed/ failed." in caplog.text
    # The connection is still usable.
    frame_id = await client.send("ping")
    assert await client.receive() == {"kind": "pong", "id": frame_id}


async def test_unknown_and_unserialisable_requests_are_errors(client: Client) -> None:
    frame_id = await client.send("request", type="nope")
    error = await client.receive()
    assert (error["id"], error["code"]) == (frame_id, "unknown_request")
    assert "define Feed.request_nope(self, data)" in error["message"]
    frame_id = await client.send("request", type="unserialisable")
    error = await client.receive()
    assert (error["id"], error["code"]) == (frame_id, "request_failed")


async def test_bad_frames_get_an_error_and_the_connection_stays_open(
    client: Client,
) -> None:
    await client.ws.send_json_to({"kind": "subscribe"})
    error = await client.receive()
    assert (error["kind"], error["id"], error["code"]) == ("error", None, "bad_frame")
    await client.ws.send_json_to({"kind": "launch", "id": 7})
    error = await client.receive()
    assert (error["id"], error["code"]) == (7, "bad_frame")
    frame_id = await client.send("ping")
    assert await client.receive() == {"kind": "pong", "id": frame_id}


async def test_invalid_json_closes_with_1007(client: Client) -> None:
    await client.ws.send_to(text_data="{not json")
    assert await client.ws.receive_output() == {"type": "websocket.close", "code": 1007}


async def test_a_disconnected_client_stops_listening(
    store: MemoryHistoryStore,
) -> None:
    communicator = WebsocketCommunicator(Feed.as_asgi(), "/ws/")
    await communicator.connect()
    client = Client(communicator)
    await client.subscribe("news")
    assert "news" in store.hub
    await communicator.disconnect()
    assert "news" not in store.hub


class BrokenStore(MemoryHistoryStore):
    """Fails the first ``failures`` reads."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def read(self, stream: str, since: Any = None) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store is down")
        return await super().read(stream, since)


async def test_a_store_that_keeps_failing_closes_the_connection_with_4011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = set_stream_store(BrokenStore(failures=10))
    try:
        communicator = WebsocketCommunicator(Feed.as_asgi(), "/ws/feed/")
        await communicator.connect()
        with caplog.at_level(logging.INFO, "django_realtime.streams"):
            await communicator.send_json_to(
                {"kind": "subscribe", "id": 1, "stream": "s"}
            )
            closed = await communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4011}
        assert "Stopped streaming to /ws/feed/: the history store failed" in caplog.text
        assert "the store is down" in caplog.text
        assert caplog.text.count("retrying") == 3
        await communicator.disconnect()
    finally:
        set_stream_store(old)


async def test_a_store_blip_costs_a_retry_not_the_connection() -> None:
    store = BrokenStore(failures=2)
    old = set_stream_store(store)
    try:
        communicator = WebsocketCommunicator(Feed.as_asgi(), "/ws/feed/")
        await communicator.connect()
        client = Client(communicator)
        assert (await client.subscribe("s"))["kind"] == "subscribed"
        await apublish("s", "after the blip")
        (frame,) = await client.publications(1)
        assert frame["data"] == "after the blip"
        await communicator.disconnect()
    finally:
        set_stream_store(old)


async def test_a_subscribe_cancelled_by_an_unsubscribe_is_still_answered(
    client: Client,
) -> None:
    subscribe = await client.send("subscribe", stream="news")
    unsubscribe = await client.send("unsubscribe", stream="news")
    first, second = await client.receive(), await client.receive()
    assert (first["id"], first["kind"], first["code"]) == (
        subscribe,
        "error",
        "cancelled",
    )
    assert second == {"kind": "unsubscribed", "id": unsubscribe, "stream": "news"}


def test_a_consumer_with_an_unknown_slow_client_policy_fails_where_it_is_defined() -> (
    None
):
    with pytest.raises(ValueError, match="Expected slow_client_policy 'catch_up'"):

        class Wrong(StreamConsumer):
            slow_client_policy = "drop"


def test_the_replay_budget_comes_from_the_setting_unless_the_consumer_sets_it(
    settings: Any,
) -> None:
    class Own(StreamConsumer):
        replay_rate = 10.0

    settings.REALTIME = {"STREAM_REPLAY": {"RATE": None, "BURST": 5000}}
    default, own = StreamConsumer(), Own()
    default.scope = own.scope = {"type": "websocket", "path": "/ws/"}
    assert default.stream_session.limits.replay_rate is None
    assert default.stream_session.limits.replay_burst == 5000
    assert (
        own.stream_session.limits.replay_rate,
        own.stream_session.limits.replay_burst,
    ) == (10.0, 5000)
