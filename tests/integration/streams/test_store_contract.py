"""The contract every history store keeps, run on each store in STORES."""

from __future__ import annotations

import asyncio
import json

import pytest

from django_realtime.streams.positions import (
    EPOCH_CHANGED,
    INVALID_POSITION,
    OUTSIDE_WINDOW,
    Position,
    Publication,
)
from tests.integration.streams.conftest import StoreCase

pytestmark = pytest.mark.timeout(20)


class Recorder:
    """A listener that records what it is told."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.resyncs: list[str] = []
        self.arrived = asyncio.Event()

    def publication(self, publication: Publication) -> None:
        self.publications.append(publication)
        self.arrived.set()

    def resync(self, stream: str) -> None:
        self.resyncs.append(stream)

    async def wait_for(self, count: int) -> list[Publication]:
        while len(self.publications) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        return self.publications


async def test_publish_numbers_a_stream_from_one_in_one_epoch(case: StoreCase) -> None:
    store = case.make()
    stream = case.stream()
    first = await store.publish(stream, '{"n":1}')
    second = await store.publish(stream, '{"n":2}')
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch
    assert first.stream == stream
    now = await store.read(stream)
    assert now.position == Position(first.epoch, 2)
    assert now.publications == ()
    assert now.recovered


async def test_an_unused_stream_is_at_offset_zero(case: StoreCase) -> None:
    store = case.make()
    history = await store.read(case.stream())
    assert history.offset == 0
    again = await store.read(case.stream())
    assert again.epoch == history.epoch


async def test_read_returns_everything_after_a_position_in_order(
    case: StoreCase,
) -> None:
    store = case.make()
    stream = case.stream()
    published = [
        await store.publish(stream, json.dumps({"n": n})) for n in range(1, 11)
    ]
    epoch = published[0].epoch
    history = await store.read(stream, Position(epoch, 4))
    assert history.recovered
    assert [p.offset for p in history.publications] == list(range(5, 11))
    assert [json.loads(p.data)["n"] for p in history.publications] == list(range(5, 11))
    assert history.publications == tuple(published[4:])
    everything = await store.read(stream, Position(epoch, 0))
    assert [p.offset for p in everything.publications] == list(range(1, 11))
    up_to_date = await store.read(stream, Position(epoch, 10))
    assert up_to_date.recovered
    assert up_to_date.publications == ()


async def test_a_position_from_another_epoch_is_not_recovered(case: StoreCase) -> None:
    store = case.make()
    stream = case.stream()
    await store.publish(stream, "1")
    history = await store.read(stream, Position("not-the-epoch", 0))
    assert history.reason == EPOCH_CHANGED
    assert not history.recovered
    assert history.publications == ()
    assert history.offset == 1


async def test_a_position_past_the_newest_or_negative_is_invalid(
    case: StoreCase,
) -> None:
    store = case.make()
    stream = case.stream()
    publication = await store.publish(stream, "1")
    ahead = await store.read(stream, Position(publication.epoch, 2))
    assert ahead.reason == INVALID_POSITION
    behind = await store.read(stream, Position(publication.epoch, -1))
    assert behind.reason == INVALID_POSITION


async def test_history_is_bounded_by_count(case: StoreCase) -> None:
    store = case.make({"*": {"max_count": 3}})
    stream = case.stream()
    published = [await store.publish(stream, str(n)) for n in range(1, 11)]
    epoch = published[0].epoch
    assert (await store.read(stream, Position(epoch, 6))).reason == OUTSIDE_WINDOW
    kept = await store.read(stream, Position(epoch, 7))
    assert [p.data for p in kept.publications] == ["8", "9", "10"]


async def test_history_is_bounded_by_bytes(case: StoreCase) -> None:
    store = case.make({"*": {"max_count": None, "max_bytes": 10}})
    stream = case.stream()
    first = await store.publish(stream, '"abc"')  # 5 bytes
    await store.publish(stream, '"def"')
    await store.publish(stream, '"é"')  # 4 bytes in UTF-8: 14 in all, over 10
    history = await store.read(stream, Position(first.epoch, 1))
    assert [p.data for p in history.publications] == ['"def"', '"é"']
    assert (await store.read(stream, Position(first.epoch, 0))).reason == OUTSIDE_WINDOW


async def test_a_payload_over_max_bytes_is_refused_without_using_an_offset(
    case: StoreCase,
) -> None:
    store = case.make({"*": {"max_bytes": 8}})
    stream = case.stream()
    with pytest.raises(ValueError, match="over the stream's max_bytes"):
        await store.publish(stream, '"' + "x" * 10 + '"')
    assert (await store.publish(stream, "1")).offset == 1


async def test_history_is_bounded_by_age(case: StoreCase) -> None:
    store = case.make({"*": {"max_age": 60}})
    stream = case.stream()
    old = await store.publish(stream, "1")
    case.clock.now += 45
    await store.publish(stream, "2")
    case.clock.now += 30
    history = await store.read(stream, Position(old.epoch, 1))
    assert [p.data for p in history.publications] == ["2"]
    assert (await store.read(stream, Position(old.epoch, 0))).reason == OUTSIDE_WINDOW
    case.clock.now += 60
    gone = await store.read(stream, Position(old.epoch, 1))
    assert gone.reason == OUTSIDE_WINDOW
    assert (await store.read(stream, Position(old.epoch, 2))).recovered


async def test_policies_are_chosen_by_stream_name_pattern(case: StoreCase) -> None:
    store = case.make({"short.*": {"max_count": 1}})
    short, long = case.stream("short.x"), case.stream("long")
    for n in range(3):
        await store.publish(short, str(n))
        await store.publish(long, str(n))
    first_short = await store.read(short, Position((await store.read(short)).epoch, 1))
    assert first_short.reason == OUTSIDE_WINDOW
    first_long = await store.read(long, Position((await store.read(long)).epoch, 1))
    assert [p.data for p in first_long.publications] == ["1", "2"]


async def test_streams_are_numbered_independently(case: StoreCase) -> None:
    store = case.make()
    a, b = case.stream("a"), case.stream("b")
    await store.publish(a, "1")
    await store.publish(a, "2")
    assert (await store.publish(b, "1")).offset == 1
    history = await store.read(a, Position((await store.read(a)).epoch, 0))
    assert [p.data for p in history.publications] == ["1", "2"]


async def test_payloads_come_back_exactly_as_published(case: StoreCase) -> None:
    store = case.make()
    stream = case.stream()
    payload = json.dumps(
        {"text": 'héllo \u2603 "quoted"\n', "nested": [1, {"a": None}]}
    )
    publication = await store.publish(stream, payload)
    history = await store.read(stream, Position(publication.epoch, 0))
    assert history.publications[0].data == payload
    frame = json.loads(history.publications[0].frame)
    assert frame == {
        "kind": "publication",
        "stream": stream,
        "epoch": publication.epoch,
        "offset": 1,
        "data": json.loads(payload),
    }


async def test_flush_starts_every_stream_in_a_new_epoch(case: StoreCase) -> None:
    store = case.make()
    stream = case.stream()
    before = await store.publish(stream, "1")
    await store.flush()
    history = await store.read(stream, before.position)
    assert history.reason == EPOCH_CHANGED
    after = await store.publish(stream, "2")
    assert after.offset == 1
    assert after.epoch != before.epoch


async def test_listeners_receive_each_publication_of_their_streams(
    case: StoreCase,
) -> None:
    store = case.make()
    stream, other = case.stream("a"), case.stream("b")
    first, second = Recorder(), Recorder()
    await store.listen(stream, first)
    await store.listen(stream, second)
    await store.publish(other, "0")
    for n in range(1, 4):
        await store.publish(stream, str(n))
    for recorder in (first, second):
        received = await recorder.wait_for(3)
        assert [(p.stream, p.offset, p.data) for p in received] == [
            (stream, 1, "1"),
            (stream, 2, "2"),
            (stream, 3, "3"),
        ]


async def test_unlisten_stops_announcements(case: StoreCase) -> None:
    store = case.make()
    stream = case.stream()
    stays, leaves = Recorder(), Recorder()
    await store.listen(stream, stays)
    await store.listen(stream, leaves)
    await store.publish(stream, "1")
    await leaves.wait_for(1)
    await store.unlisten(stream, leaves)
    await store.publish(stream, "2")
    await stays.wait_for(2)
    assert [p.offset for p in leaves.publications] == [1]


async def test_concurrent_publishes_get_distinct_offsets_announced_in_order(
    case: StoreCase,
) -> None:
    store = case.make()
    stream = case.stream()
    recorder = Recorder()
    await store.listen(stream, recorder)
    published = await asyncio.gather(
        *(store.publish(stream, str(n)) for n in range(200))
    )
    assert sorted(p.offset for p in published) == list(range(1, 201))
    received = await recorder.wait_for(200)
    assert [p.offset for p in received] == list(range(1, 201))


async def test_stores_on_one_backend_share_streams(case: StoreCase) -> None:
    case.require("shared")
    a, b = case.make(), case.make()
    stream = case.stream()
    recorder = Recorder()
    await b.listen(stream, recorder)
    publication = await a.publish(stream, '"hello"')
    received = await recorder.wait_for(1)
    assert received[0] == publication
    history = await b.read(stream, Position(publication.epoch, 0))
    assert history.publications == (publication,)
    assert (await b.publish(stream, "2")).offset == 2


async def test_an_idle_stream_whose_history_aged_out_replays_nothing(
    case: StoreCase,
) -> None:
    """Nobody listens and nothing is left: the store may forget the stream."""
    store = case.make({"*": {"max_age": 30}})
    idle, busy = case.stream("idle"), case.stream("busy")
    old = await store.publish(idle, "1")
    case.clock.now += 120
    await store.publish(busy, "1")
    case.clock.now += 1
    history = await store.read(idle, old.position)
    # Nothing was missed: a store that kept the epoch says so; one that
    # forgot the stream says the epoch changed. Never a wrong replay.
    assert history.publications == ()
    assert history.reason in {None, EPOCH_CHANGED}
