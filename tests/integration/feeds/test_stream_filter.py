"""The streams' per-subscriber filter: withheld publications, live and replayed.

A StreamConsumer whose ``stream_filter`` withholds odd offsets of one
stream; another stream on the same connection is sent as published.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest

from django_realtime.streams import (
    Position,
    Publication,
    StreamConsumer,
    apublish,
    set_stream_store,
)
from django_realtime.streams.filters import PublicationFilter
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.testing import StreamClient

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


async def even_only(publications: Sequence[Publication]) -> list[str | None]:
    return [None if p.offset % 2 else f'{{"even":{p.data}}}' for p in publications]


class Filtering(StreamConsumer):
    async def authorize_stream(self, stream: str) -> bool:
        return True

    def stream_filter(self, stream: str) -> PublicationFilter | None:
        return even_only if stream == "filtered" else None


async def test_a_filter_withholds_and_the_next_frame_says_how_many() -> None:
    client = StreamClient(Filtering.as_asgi(), "/")
    await client.connect()
    try:
        start = await client.subscribe("filtered")
        await client.subscribe("plain")
        for n in range(1, 6):
            await apublish("filtered", n)
            await apublish("plain", n)
        # StreamClient checks each frame's offset against "withheld".
        assert await client.wait_for("plain", 5) == [1, 2, 3, 4, 5]
        assert await client.wait_for("filtered", 2) == [{"even": 2}, {"even": 4}]
    finally:
        await client.close()

    # A replay goes through the filter too; what is withheld at the end is
    # counted into the next frame.
    late = StreamClient(Filtering.as_asgi(), "/")
    await late.connect()
    try:
        subscribed = await late.subscribe("filtered", Position(start["epoch"], 1))
        assert (subscribed["recovered"], subscribed["replayed"]) == (True, 4)
        await apublish("filtered", 6)
        frames = [await late.communicator.receive_json_from(1) for _ in range(2)]
        assert [(f["offset"], f.get("withheld"), f["data"]) for f in frames] == [
            (2, None, {"even": 2}),
            (4, 1, {"even": 4}),
        ]
        frame = await late.communicator.receive_json_from(1)
        assert (frame["offset"], frame["withheld"], frame["data"]) == (
            6,
            1,
            {"even": 6},
        )
    finally:
        await late.close()


class EvenOnlyAtOnce:
    """The same filter, which also withholds odd offsets as they are announced."""

    def __init__(self) -> None:
        self.at_once = 0

    def withholds(self, publication: Publication) -> bool:
        odd = publication.offset % 2 == 1
        self.at_once += odd
        return odd

    async def __call__(self, publications: Sequence[Publication]) -> list[str | None]:
        return await even_only(publications)


class FilteringAtOnce(Filtering):
    filters: ClassVar[list[EvenOnlyAtOnce]] = []

    def stream_filter(self, stream: str) -> PublicationFilter | None:
        self.filters.append(EvenOnlyAtOnce())
        return self.filters[-1]


async def test_what_a_filter_withholds_at_once_is_counted_in_order() -> None:
    client = StreamClient(FilteringAtOnce.as_asgi(), "/")
    await client.connect()
    try:
        await client.subscribe("filtered")
        for n in range(1, 8):
            await apublish("filtered", n)
            if n % 2 == 0:
                # Delivered: the connection is idle again when the next comes.
                await client.wait_for("filtered", n // 2)
        await apublish("filtered", 8)
        # StreamClient checks each frame's offset against "withheld".
        received = await client.wait_for("filtered", 4)
        assert received == [{"even": 2}, {"even": 4}, {"even": 6}, {"even": 8}]
        # Each odd one was withheld as it was announced, none through a task.
        assert FilteringAtOnce.filters[-1].at_once == 4
    finally:
        await client.close()
