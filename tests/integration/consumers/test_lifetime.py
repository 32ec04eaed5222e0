"""A consumer is freed once its connection has ended.

A server may keep the context of a send it was given for long after the
connection: uvicorn schedules its keepalive ping from the ``accept`` send,
and asyncio keeps a cancelled timer (with the context it copied) until it
is due. Nothing django_realtime puts in that context may keep the consumer
alive, or a wave of closed connections stays in memory for the ping
interval.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from django_realtime.consumers import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)

pytestmark = pytest.mark.timeout(10)

instances: list[weakref.ref[Any]] = []


class AsyncEcho(AsyncWebsocketConsumer):
    groups = ["lifetime"]

    async def connect(self) -> None:
        instances.append(weakref.ref(self))
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: Any = None):
        await self.send(text_data=text_data)


class JsonEcho(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        instances.append(weakref.ref(self))
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


class SyncEcho(WebsocketConsumer):
    def connect(self) -> None:
        instances.append(weakref.ref(self))
        self.accept()

    def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        self.send(text_data=text_data)


@pytest.mark.parametrize("consumer", [AsyncEcho, JsonEcho, SyncEcho])
async def test_a_timer_the_server_keeps_from_a_send_does_not_keep_the_consumer(
    consumer: type[Any],
) -> None:
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    sent: list[dict[str, Any]] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in (
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": '"hello"'},
        {"type": "websocket.disconnect", "code": 1000},
    ):
        inbox.put_nowait(message)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        # As uvicorn does for its pings: a timer made in the sender's
        # context, cancelled when the connection ends, kept until due.
        timer = loop.call_later(60, lambda: None)
        timer.cancel()
        timers.append(timer)

    instances.clear()
    scope = {"type": "websocket", "path": "/ws/", "headers": [], "subprotocols": []}
    await consumer.as_asgi()(scope, inbox.get, send)
    assert [message["type"] for message in sent] == [
        "websocket.accept",
        "websocket.send",
    ]
    assert sent[1].get("text") == '"hello"'

    for _ in range(3):  # the consumer's layer reader ends on its next turn
        await asyncio.sleep(0)
    gc.collect()
    assert timers  # the server still holds the contexts of its sends
    assert [ref() for ref in instances] == [None]
