"""What is queued for a consumer that has ended goes with it, not at expiry."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.layers import InMemoryChannelLayer, channel_layers
from django_realtime.testing import WebsocketCommunicator
from tests.integration.layers.conftest import FakeClock

pytestmark = pytest.mark.timeout(10)

ALIAS = "ended-channel"


class LastWords(AsyncWebsocketConsumer):
    """Gets a message from the layer just as it leaves: it never reads it."""

    channel_layer_alias = ALIAS

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.send(self.channel_name, {"type": "too.late"})

    async def too_late(self, event: dict[str, Any]) -> None:
        raise AssertionError("A consumer that ended read a message.")


async def test_messages_queued_for_an_ended_consumer_are_dropped_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=10, clock=clock)
    old = channel_layers.set(ALIAS, layer)
    try:
        socket = WebsocketCommunicator(LastWords.as_asgi(), "/ws/")
        assert (await socket.connect())[0]
        with caplog.at_level(logging.DEBUG, "django_realtime.layers.memory"):
            await socket.disconnect()
            await socket.wait()
            assert "Dropped 1 unread messages of ended channel" in caplog.text
            caplog.clear()
            clock.now += 11
            # The next operation sweeps expired messages: there are none.
            await layer.send("other", {"type": "x"})
        assert "expired unread" not in caplog.text
        assert layer.stats.expired_messages == 0
        assert layer.stats.discarded_messages == 1
        assert await layer.receive("other") == {"type": "x"}
    finally:
        channel_layers.backends.pop(ALIAS, None)
        if old is not None:
            channel_layers.set(ALIAS, old)
