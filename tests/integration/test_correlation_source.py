"""Correlation ids built on demand: what a consumer's source gives, and where.

A consumer does not build an id per message; it installs a source that
builds the id of the message handled in the asking context. These tests
hold the ids users see to what they were when each message set its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer
from django_realtime.consumers.http import AsyncHttpConsumer
from django_realtime.middleware.correlation import (
    CorrelationIdFilter,
    correlation_id,
    get_correlation_id,
    reset_source,
    set_source,
    stamp,
)
from django_realtime.testing import HttpCommunicator, WebsocketCommunicator

pytestmark = pytest.mark.timeout(20)


def test_a_source_is_asked_only_when_an_id_is_needed() -> None:
    calls: list[None] = []

    def source() -> str:
        calls.append(None)
        return "src-1"

    token = set_source(source)
    try:
        assert calls == []
        assert get_correlation_id() == "src-1"
        assert stamp({"type": "t"}) == {"type": "t", "correlation_id": "src-1"}
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
        CorrelationIdFilter().filter(record)
        assert record.correlation_id == "src-1"  # type: ignore[attr-defined]
        assert len(calls) == 3
        with correlation_id("inner"):
            assert get_correlation_id() == "inner"
        assert get_correlation_id() == "src-1"
    finally:
        reset_source(token)
    assert get_correlation_id() is None


def test_a_source_that_has_no_id_stamps_nothing() -> None:
    token = set_source(lambda: None)
    try:
        assert get_correlation_id() is None
        assert stamp({"type": "t"}) == {"type": "t"}
    finally:
        reset_source(token)


class Spawner(AsyncWebsocketConsumer):
    """Start a task on ``start``; ``go`` lets it report the id it runs under."""

    async def connect(self) -> None:
        self.go = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        if text_data == "start":
            self.task = asyncio.create_task(self.later())
        else:
            await self.send(text_data=f"go {get_correlation_id()}")
            self.go.set()

    async def later(self) -> None:
        await self.go.wait()
        # Sent after its handler ended: it goes out at once, under the id of
        # the frame that started it.
        await self.send(text_data=f"task {get_correlation_id()}")


async def test_a_task_started_by_a_handler_keeps_the_id_of_its_frame() -> None:
    communicator = WebsocketCommunicator(
        Spawner.as_asgi(), "/ws/", headers=[(b"x-request-id", b"sp")]
    )
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="start")
    await communicator.send_to(text_data="go")
    received = {await communicator.receive_from(), await communicator.receive_from()}
    assert received == {"go sp.2", "task sp.1"}
    await communicator.disconnect()


class Nested(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        with correlation_id("mine"):
            await self.send(text_data=str(get_correlation_id()))
        await self.send(text_data=str(self.correlation_id))


async def test_an_id_set_inside_a_handler_wins_until_its_block_ends() -> None:
    communicator = WebsocketCommunicator(
        Nested.as_asgi(), "/ws/", headers=[(b"x-request-id", b"n")]
    )
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="x")
    assert await communicator.receive_from() == "mine"
    assert await communicator.receive_from() == "n.1"
    await communicator.disconnect()


class SyncSpawner(WebsocketConsumer):
    def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        self.send(text_data=f"{text_data} {get_correlation_id()}")


async def test_each_frame_of_a_sync_consumer_has_its_own_id() -> None:
    communicator = WebsocketCommunicator(
        SyncSpawner.as_asgi(), "/ws/", headers=[(b"x-request-id", b"s")]
    )
    assert (await communicator.connect())[0]
    for n in (1, 2, 3):
        await communicator.send_to(text_data=str(n))
        assert await communicator.receive_from() == f"{n} s.{n}"
    await communicator.disconnect()


class Layered(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=str(self.correlation_id))

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        await self.channel_layer.send(
            self.channel_name, {"type": "echoed", "correlation_id": text_data}
        )

    async def echoed(self, message: dict[str, Any]) -> None:
        await self.send(text_data=f"echoed {self.correlation_id}")


async def test_the_handshake_has_the_connections_id_and_a_layer_message_its_own() -> (
    None
):
    communicator = WebsocketCommunicator(
        Layered.as_asgi(), "/ws/", headers=[(b"x-request-id", b"conn")]
    )
    assert (await communicator.connect())[0]
    assert await communicator.receive_from() == "conn"
    await communicator.send_to(text_data="from-elsewhere")
    assert await communicator.receive_from() == "echoed from-elsewhere"
    await communicator.disconnect()


class Answer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(200, str(self.correlation_id).encode())


async def test_an_http_consumer_answers_under_the_requests_id() -> None:
    communicator = HttpCommunicator(
        Answer.as_asgi(), "GET", "/", headers=[(b"x-request-id", b"req-7")]
    )
    response = await communicator.get_response()
    assert response["body"] == b"req-7"


class Poked(AsyncWebsocketConsumer):
    instances: list[Poked] = []

    async def connect(self) -> None:
        self.instances.append(self)
        await self.accept()

    async def poke(self, message: dict[str, Any]) -> None:
        await self.send(text_data=f"poked {self.correlation_id}")


async def test_a_message_dispatched_from_another_task_has_its_own_id() -> None:
    Poked.instances = []
    communicator = WebsocketCommunicator(
        Poked.as_asgi(), "/ws/", headers=[(b"x-request-id", b"pk")]
    )
    assert (await communicator.connect())[0]
    [consumer] = Poked.instances
    # This task is not the consumer's: its context has no id source of it.
    await consumer.dispatch({"type": "poke", "correlation_id": "from-outside"})
    assert await communicator.receive_from() == "poked from-outside"
    await consumer.dispatch({"type": "poke"})
    assert await communicator.receive_from() == "poked pk"
    assert get_correlation_id() is None
    await communicator.disconnect()
