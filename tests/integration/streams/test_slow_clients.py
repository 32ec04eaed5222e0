"""A client that stops reading: its queue stays bounded, nobody else waits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import ClassVar

import pytest

from django_realtime.streams import (
    StreamConsumer,
    apublish,
    consumer as stream_consumer,
    set_stream_store,
)
from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable
from tests.integration.streams.asgi_client import Client

pytestmark = pytest.mark.timeout(10)


class Slowpoke(StreamConsumer):
    """Reads every stream; keeps at most 10 publications queued."""

    max_queued = 10
    instances: ClassVar[list[Slowpoke]] = []

    async def connect(self) -> None:
        self.instances.append(self)
        await self.accept()

    async def authorize_stream(self, stream: str) -> bool:
        return True


class Closer(Slowpoke):
    slow_client_policy = "close"


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore(PolicyTable({"*": {"max_count": 1000}}))
    old = set_stream_store(fresh)
    Slowpoke.instances.clear()
    yield fresh
    set_stream_store(old)


async def test_a_client_that_stops_reading_is_caught_up_from_history_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = stream_consumer.stats.slow_catch_ups
    slow, fast = Client(Slowpoke), Client(Slowpoke)
    await slow.open()
    await slow.subscribe("s")
    await fast.open()
    await fast.subscribe("s")
    slow.reading.clear()
    pump = Slowpoke.instances[0]._pump
    assert pump is not None
    with caplog.at_level(logging.WARNING, "django_realtime.streams"):
        for n in range(1, 51):
            await apublish("s", n)
            assert pump.queued <= Slowpoke.max_queued
            # The other subscriber gets each publication as it comes.
            assert (await fast.frame())["data"] == n
    assert stream_consumer.stats.slow_catch_ups > before
    assert "does not keep up" in caplog.text
    slow.reading.set()
    offsets = [(await slow.frame())["offset"] for _ in range(50)]
    assert offsets == list(range(1, 51))
    await apublish("s", 51)
    assert (await slow.frame())["offset"] == 51
    assert slow.outbox.empty()
    await slow.close()
    await fast.close()


async def test_the_close_policy_closes_a_client_that_stops_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = stream_consumer.stats.slow_closes
    slow = Client(Closer)
    await slow.open()
    await slow.subscribe("s")
    slow.reading.clear()
    with caplog.at_level(logging.WARNING, "django_realtime.streams"):
        for n in range(20):
            await apublish("s", n)
        closed = await asyncio.wait_for(slow.outbox.get(), 3)
    assert closed == {"type": "websocket.close", "code": 4008}
    assert stream_consumer.stats.slow_closes == before + 1
    assert "Closing /ws/ with 4008: it does not keep up" in caplog.text
    pump = Closer.instances[0]._pump
    assert pump is not None
    assert len(pump.events) == 0
    await slow.close()


async def test_queued_bytes_are_bounded_too() -> None:
    class Tight(Slowpoke):
        max_queued = 1000
        max_queued_bytes = 100

    slow = Client(Tight)
    await slow.open()
    await slow.subscribe("s")
    slow.reading.clear()
    pump = Slowpoke.instances[0]._pump
    assert pump is not None
    for _ in range(30):
        await apublish("s", "x" * 20)
        assert pump.queued_bytes <= 100
    slow.reading.set()
    offsets = [(await slow.frame())["offset"] for _ in range(30)]
    assert offsets == list(range(1, 31))
    await slow.close()
