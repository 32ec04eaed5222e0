"""Correlation ids: from the frame, through the layer, into handlers and logs."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.http import HttpResponse
from django.test import RequestFactory

from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer
from django_realtime.delivery import send_to_group
from django_realtime.layers import channel_layers, get_channel_layer
from django_realtime.middleware.correlation import (
    CorrelationIdFilter,
    CorrelationIdMiddleware,
    correlation_id,
    get_correlation_id,
    id_from_headers,
    stamp,
)
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(20)

HEX16 = re.compile(r"[0-9a-f]{16}")


class Relay(AsyncWebsocketConsumer):
    """Forward each frame to the group ``relay``; report what handlers saw."""

    groups = ["relay"]
    seen: list[tuple[str, str | None]] = []

    async def connect(self) -> None:
        self.seen.append(("connect", self.correlation_id))
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        self.seen.append(("receive", self.correlation_id))
        logging.getLogger("tests.correlation").info("relaying %s", text_data)
        await self.channel_layer.group_send(
            "relay", {"type": "relayed", "text": text_data}
        )

    async def relayed(self, message: dict[str, Any]) -> None:
        self.seen.append(("relayed", self.correlation_id))
        await self.send(text_data=f"{message['text']} {message['correlation_id']}")


class SyncRelay(WebsocketConsumer):
    seen: list[str | None] = []

    def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        # The pool thread sees the id of the frame it handles.
        self.seen.append(self.correlation_id)
        self.send(text_data=get_correlation_id())


async def test_each_frame_has_its_id_and_layer_messages_carry_it_to_receivers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Relay.seen = []
    sender = WebsocketCommunicator(
        Relay.as_asgi(), "/ws/", headers=[(b"x-request-id", b"lb-42")]
    )
    other = WebsocketCommunicator(Relay.as_asgi(), "/ws/")
    assert (await sender.connect())[0]
    assert (await other.connect())[0]
    handler = logging.Handler()
    handler.addFilter(CorrelationIdFilter())
    records: list[logging.LogRecord] = []
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tests.correlation")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="tests.correlation"):
            await sender.send_to(text_data="one")
            assert await other.receive_from() == "one lb-42.1"
            assert await sender.receive_from() == "one lb-42.1"
            await sender.send_to(text_data="two")
            assert await other.receive_from() == "two lb-42.2"
            assert await sender.receive_from() == "two lb-42.2"
    finally:
        logger.removeHandler(handler)
    assert [r.correlation_id for r in records] == ["lb-42.1", "lb-42.2"]  # type: ignore[attr-defined]
    # The receivers handled the layer message under the sender's id.
    assert ("relayed", "lb-42.1") in Relay.seen
    assert Relay.seen.count(("relayed", "lb-42.2")) == 2
    # A connection without a header got a random id of its own.
    other_ids = {cid for kind, cid in Relay.seen if kind == "connect"} - {"lb-42"}
    [other_id] = other_ids
    assert HEX16.fullmatch(other_id)
    await sender.disconnect()
    await other.disconnect()


async def test_a_sync_handler_sees_the_frames_id_in_its_thread() -> None:
    SyncRelay.seen = []
    communicator = WebsocketCommunicator(
        SyncRelay.as_asgi(), "/ws/", headers=[(b"x-correlation-id", b"c-1")]
    )
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="x")
    assert await communicator.receive_from() == "c-1.1"
    assert SyncRelay.seen == ["c-1.1"]
    await communicator.disconnect()


@pytest.mark.parametrize(
    "value",
    [b"", b"a" * 65, b"two words", b"line\nbreak", b"\xff\xfe", b"%(x)s"],
)
def test_an_unsafe_header_is_not_used(value: bytes) -> None:
    assert id_from_headers([(b"x-request-id", value)]) is None


def test_a_safe_header_is_used_whatever_its_case() -> None:
    assert id_from_headers([(b"X-Request-ID", b"abc-1.2:3_4")]) == "abc-1.2:3_4"


def test_stamp_copies_and_keeps_an_id_the_sender_set() -> None:
    message = {"type": "x"}
    assert stamp(message) is message  # no current id: unchanged
    with correlation_id("outer"):
        stamped = stamp(message)
        assert stamped == {"type": "x", "correlation_id": "outer"}
        assert message == {"type": "x"}
        own = {"type": "x", "correlation_id": "mine"}
        assert stamp(own) is own


async def test_a_view_under_the_middleware_sends_with_the_requests_id() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("orders", channel)

    def view(request: Any) -> HttpResponse:
        send_to_group("orders", {"type": "order"})
        return HttpResponse(request.correlation_id)

    middleware = CorrelationIdMiddleware(view)
    response = await asyncio.to_thread(
        middleware, RequestFactory().get("/", HTTP_X_REQUEST_ID="req-9")
    )
    assert response.content == b"req-9"
    assert response["X-Request-ID"] == "req-9"
    message = await asyncio.wait_for(layer.receive(channel), 1)
    assert message == {"type": "order", "correlation_id": "req-9"}

    response = await asyncio.to_thread(middleware, RequestFactory().get("/"))
    assert HEX16.fullmatch(response["X-Request-ID"])
    await layer.group_discard("orders", channel)


async def test_the_async_middleware_gives_each_request_an_id() -> None:
    async def view(request: Any) -> HttpResponse:
        return HttpResponse(get_correlation_id())

    middleware = CorrelationIdMiddleware(view)
    response = await middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="a-1"))
    assert response.content == b"a-1"
    assert get_correlation_id() is None


@pytest.mark.redis
def test_the_id_crosses_the_redis_layer() -> None:
    from django_realtime.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(
        hosts=["redis://127.0.0.1:6379/0"], prefix=f"corr-{uuid.uuid4().hex[:8]}"
    )
    old = channel_layers.set("default", layer)
    try:

        async def run() -> dict[str, Any]:
            channel = await layer.new_channel()
            await layer.group_add("g", channel)
            with correlation_id("across"):
                await asyncio.to_thread(send_to_group, "g", {"type": "t"})
            received: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 5)
            await layer.flush()
            await layer.close()
            return received

        assert async_to_sync(run)() == {"type": "t", "correlation_id": "across"}
    finally:
        channel_layers.set("default", old)
