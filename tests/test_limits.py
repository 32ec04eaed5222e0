"""ConnectionLimits: connections per process, handshake time, message rate."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.middleware import limits
from django_realtime.middleware.limits import ConnectionLimits, TokenBucket
from django_realtime.testing import HttpCommunicator, WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class Echo(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        await self.send(text_data=text_data)


class SlowToAnswer(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self) -> None:
        await asyncio.sleep(5)
        await self.accept()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True
    assert bucket.take(0.5) is False
    assert [bucket.take(100) for _ in range(4)] == [True, True, True, False]


def test_limits_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="policy"):
        ConnectionLimits(Echo.as_asgi(), policy="ignore")
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(Echo.as_asgi(), max_connections=0)
    with pytest.raises(ValueError, match="rate > 0"):
        ConnectionLimits(Echo.as_asgi(), rate=0)


async def connect(app: Any) -> tuple[WebsocketCommunicator, bool, Any]:
    communicator = WebsocketCommunicator(app, "/ws/")
    accepted, detail = await communicator.connect()
    return communicator, accepted, detail


async def test_handshakes_over_max_connections_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(Echo.as_asgi(), max_connections=2)
    before = limits.stats.refused_over_capacity
    first, ok1, _ = await connect(app)
    second, ok2, _ = await connect(app)
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        _third, ok3, code = await connect(app)
    assert (ok1, ok2, ok3, code) == (True, True, False, 1013)
    assert limits.stats.refused_over_capacity == before + 1
    assert "holds 2 connections, its max_connections" in caplog.text
    await first.disconnect()
    fourth, ok4, _ = await connect(app)
    assert ok4
    await second.disconnect()
    await fourth.disconnect()


async def test_an_unanswered_handshake_is_refused_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(SlowToAnswer.as_asgi(), handshake_timeout=0.1)
    before = limits.stats.handshake_timeouts
    communicator = WebsocketCommunicator(app, "/ws/")
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        accepted, code = await communicator.connect(timeout=2)
    assert (accepted, code) == (False, 1013)
    assert limits.stats.handshake_timeouts == before + 1
    assert "neither accepted nor refused it within 0.1 s" in caplog.text
    communicator.stop()


async def test_a_connection_over_its_rate_is_closed_with_4029(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    app = ConnectionLimits(Echo.as_asgi(), rate=5, burst=3, clock=clock)
    communicator, accepted, _ = await connect(app)
    assert accepted
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        for n in range(4):
            await communicator.send_to(text_data=str(n))
        echoed = [await communicator.receive_from() for _ in range(3)]
        closed = await communicator.receive_output()
    assert echoed == ["0", "1", "2"]
    assert closed == {"type": "websocket.close", "code": 4029}
    assert "with 4029: over 5 messages a second (bursts of 3)" in caplog.text
    await communicator.wait()


async def test_the_drop_policy_drops_and_counts_what_is_over_the_rate() -> None:
    clock = Clock()
    app = ConnectionLimits(Echo.as_asgi(), rate=1, burst=2, policy="drop", clock=clock)
    before = limits.stats.rate_limited_drops
    communicator, accepted, _ = await connect(app)
    assert accepted
    for n in range(4):
        await communicator.send_to(text_data=str(n))
    assert [await communicator.receive_from() for _ in range(2)] == ["0", "1"]
    await communicator.receive_nothing(0.05)
    assert limits.stats.rate_limited_drops == before + 2
    clock.now += 1
    await communicator.send_to(text_data="later")
    assert await communicator.receive_from() == "later"
    await communicator.disconnect()


async def test_nested_limits_count_a_connection_once_and_apply_each_rate() -> None:
    clock = Clock()
    inner = ConnectionLimits(Echo.as_asgi(), rate=1, burst=1, clock=clock)
    app = ConnectionLimits(inner, max_connections=2)
    open_before = limits.stats.open
    first, ok1, _ = await connect(app)
    second, ok2, _ = await connect(app)
    assert limits.stats.open == open_before + 2
    _third, ok3, code = await connect(app)
    assert (ok1, ok2, ok3, code) == (True, True, False, 1013)
    await first.send_to(text_data="a")
    assert await first.receive_from() == "a"
    await first.send_to(text_data="b")  # the inner rate: one a second
    assert await first.receive_output() == {"type": "websocket.close", "code": 4029}
    await first.wait()
    await second.disconnect()
    assert limits.stats.open == open_before


async def test_other_connections_types_pass_untouched() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = await HttpCommunicator(
        ConnectionLimits(app, max_connections=1), "GET", "/"
    ).get_response()
    assert response["status"] == 204
