"""After a wave of connections has gone, the process gives back what it held."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from django_realtime import release
from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.layers import channel_layers
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(20)


class Idle(AsyncWebsocketConsumer):
    channel_layer_alias = None


class Layer:
    def __init__(self) -> None:
        self.released = 0

    async def release_idle(self) -> None:
        self.released += 1


@pytest.fixture
def small_waves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    trims: list[int] = []

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(release, "MIN_DROP", 4)
    monkeypatch.setattr(release, "QUIET", 0.1)
    monkeypatch.setattr(release, "_malloc_trim", trim)
    monkeypatch.setattr(release, "_peak", 0)
    return trims


async def test_a_wave_of_closes_trims_the_heap_and_idle_layer_connections_once(
    small_waves: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    layer = Layer()
    old = channel_layers.set("idle-test", layer)
    try:
        sockets = [WebsocketCommunicator(Idle.as_asgi(), "/ws/") for _ in range(6)]
        for socket in sockets:
            assert (await socket.connect())[0]
        with caplog.at_level(logging.INFO, "django_realtime.release"):
            for socket in sockets[:5]:
                await socket.disconnect()
            await asyncio.sleep(0.05)
            assert small_waves == []  # still closing: wait for quiet
            await asyncio.sleep(0.2)
        assert small_waves == [0]
        assert layer.released == 1
        assert "fell from 6 to 1: trimmed the C heap" in caplog.text
        await sockets[5].disconnect()
        await asyncio.sleep(0.2)
        assert small_waves == [0]  # one more close is not a wave
    finally:
        channel_layers.backends.pop("idle-test", None)
        if old is not None:
            channel_layers.set("idle-test", old)


def test_malloc_trim_is_found_on_glibc() -> None:
    assert release._find_malloc_trim() is not None


@pytest.mark.redis
async def test_the_redis_layer_closes_its_idle_pooled_connections() -> None:
    import redis.asyncio

    from django_realtime.layers.redis import RedisChannelLayer

    name = f"release-{uuid.uuid4().hex[:8]}"
    url = "redis://127.0.0.1:6379/0"
    layer = RedisChannelLayer(
        hosts=[{"address": url, "client_name": name}], prefix=name
    )
    probe: Any = redis.asyncio.Redis.from_url(url)

    async def named() -> int:
        clients = await probe.client_list()
        return sum(1 for client in clients if client["name"] == name)

    try:
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        # Twenty publishes at once: the pool opens a connection for each.
        await asyncio.gather(
            *(layer.group_send(f"g{n}", {"type": "x"}) for n in range(20))
        )
        busy = await named()
        assert busy > 1
        await layer.release_idle()
        assert await named() == 0
        await layer.group_send("g", {"type": "still.works"})
        assert (await layer.receive(channel))["type"] == "still.works"
    finally:
        await layer.flush()
        await layer.close()
        await probe.aclose()
