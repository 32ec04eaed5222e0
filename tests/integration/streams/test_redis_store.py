"""What the Redis history store adds to the contract, on the real Redis server.

Each test's stores share a key prefix of their own (see conftest.py), and
are flushed and closed after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio
from asgiref.sync import async_to_sync
from redis.exceptions import ConnectionError as RedisConnectionError

from django_realtime.streams.positions import (
    EPOCH_CHANGED,
    OUTSIDE_WINDOW,
    Position,
    Publication,
)
from django_realtime.streams.stores.redis import RedisHistoryStore
from tests.integration.streams.conftest import (
    REDIS_URL,
    STORES,
    StoreCase,
    _redis_reason,
)

pytestmark = [pytest.mark.timeout(20), pytest.mark.redis]

WAIT = 5.0


class Recorder:
    """A listener that records what it is told, and lets a test wait for it."""

    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.resyncs: list[str] = []
        self.changed = asyncio.Event()

    def publication(self, publication: Publication) -> None:
        self.publications.append(publication)
        self.changed.set()

    def resync(self, stream: str) -> None:
        self.resyncs.append(stream)
        self.changed.set()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def wait_for(self, count: int) -> list[Publication]:
        await self.wait_until(lambda: len(self.publications) >= count)
        return self.publications


@pytest.fixture
async def case() -> AsyncIterator[StoreCase]:
    """Yield a case of the Redis store; flush and close its stores afterwards."""
    if (reason := _redis_reason()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)
    [spec] = [spec for spec in STORES if spec.id == "redis"]
    store_case = StoreCase(spec)
    yield store_case
    for store in store_case.stores:
        await store.flush()
        await store.close()


@pytest.fixture
async def raw() -> AsyncIterator[redis.asyncio.Redis]:
    """Yield a plain client, to look at and break what the store keeps."""
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def make(case: StoreCase, *args: object, **options: object) -> RedisHistoryStore:
    store = case.make(*args, **options)  # type: ignore[arg-type]
    assert isinstance(store, RedisHistoryStore)
    return store


def keys_of(store: RedisHistoryStore, stream: str) -> tuple[str, str]:
    return f"{store.prefix}:{{{stream}}}:meta", f"{store.prefix}:{{{stream}}}:log"


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for a condition of the server that no event announces."""
    async with asyncio.timeout(WAIT):
        while not await check():  # noqa: ASYNC110 (Redis announces no such event)
            await asyncio.sleep(0.01)


async def test_concurrent_publishes_from_two_stores_get_consecutive_offsets(
    case: StoreCase,
) -> None:
    first, second, watcher = make(case), make(case), make(case)
    stream = case.stream()
    recorder = Recorder()
    await watcher.listen(stream, recorder)

    published = await asyncio.gather(
        *(
            store.publish(stream, str(n))
            for n in range(100)
            for store in (first, second)
        )
    )

    assert sorted(p.offset for p in published) == list(range(1, 201))
    assert len({p.epoch for p in published}) == 1
    received = await recorder.wait_for(200)
    assert [p.offset for p in received] == list(range(1, 201))
    by_offset = {p.offset: p.data for p in published}
    assert all(p.data == by_offset[p.offset] for p in received)


async def test_a_listener_of_another_store_receives_payloads_exactly(
    case: StoreCase,
) -> None:
    publisher, subscriber = make(case), make(case)
    stream = case.stream()
    recorder = Recorder()
    await subscriber.listen(stream, recorder)
    payload = json.dumps({"text": "two words\nand a line", "n": [1, 2]})

    publication = await publisher.publish(stream, payload)

    [received] = await recorder.wait_for(1)
    assert received == publication
    assert received.data == payload
    assert recorder.resyncs == []


async def test_listeners_resync_after_the_pubsub_connection_is_killed(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store, other = make(case), make(case)
    stream = case.stream()
    recorder = Recorder()
    await store.listen(stream, recorder)
    before = await other.publish(stream, "1")
    await recorder.wait_for(1)
    [victim] = [
        client
        for client in await raw.client_list()
        if client["name"] == f"{store.client_name}-pubsub"
    ]

    await raw.client_kill_filter(_id=victim["id"])
    await other.publish(stream, "2")  # most likely while it is down
    await recorder.wait_until(lambda: recorder.resyncs == [stream])
    after = await other.publish(stream, "3")

    await recorder.wait_until(lambda: recorder.publications[-1] == after)
    missed = await store.read(stream, before.position)
    assert [p.data for p in missed.publications] == ["2", "3"]
    assert recorder.resyncs == [stream]


async def test_listen_returns_once_the_subscription_is_confirmed(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store = make(case)
    stream = case.stream()
    topic = f"{store.prefix}:{{{stream}}}"
    first, second = Recorder(), Recorder()

    await store.listen(stream, first)
    await store.listen(stream, second)

    assert await raw.pubsub_numsub(topic) == [(topic, 1)]
    await store.unlisten(stream, first)
    await store.unlisten(stream, second)

    async def unsubscribed() -> bool:
        return bool(await raw.pubsub_numsub(topic) == [(topic, 0)])

    await eventually(unsubscribed)
    await store.listen(stream, first)
    publication = await store.publish(stream, "again")
    assert await first.wait_for(1) == [publication]


async def test_listen_raises_when_redis_does_not_confirm(case: StoreCase) -> None:
    store = RedisHistoryStore("redis://127.0.0.1:1", subscribe_timeout=0.3)
    stream = case.stream()
    try:
        with pytest.raises(RedisConnectionError, match="did not confirm"):
            await store.listen(stream, Recorder())
        assert stream not in store.hub
    finally:
        await store.close()


async def test_keys_expire_after_the_stream_is_left_unused(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    policies = {"aged": {"max_age": 120}, "counted": {"max_age": None}}
    store = make(case, policies, expiry=3600)
    aged, counted = case.stream("aged"), case.stream("counted")
    await store.publish(aged, "1")
    await store.publish(counted, "1")

    aged_meta, aged_log = keys_of(store, aged)
    counted_meta, counted_log = keys_of(store, counted)
    assert 3_599_000 < await raw.pttl(aged_meta) <= 3_600_000
    # An age-bounded log goes once its newest entry is too old (plus a margin).
    assert 179_000 < await raw.pttl(aged_log) <= 180_000
    assert 3_599_000 < await raw.pttl(counted_meta) <= 3_600_000
    assert 3_599_000 < await raw.pttl(counted_log) <= 3_600_000


async def test_a_read_keeps_a_quiet_streams_position(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store = make(case, expiry=3600)
    stream = case.stream()
    await store.publish(stream, "1")
    meta, _ = keys_of(store, stream)
    await raw.pexpire(meta, 1000)

    await store.read(stream)

    assert await raw.pttl(meta) > 3_599_000


async def test_a_stream_whose_meta_is_gone_starts_a_new_epoch_without_its_log(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store = make(case)
    stream = case.stream()
    for n in range(3):
        old = await store.publish(stream, str(n))
    meta, _ = keys_of(store, stream)

    await raw.delete(meta)  # as if it expired, or Redis lost it
    new = await store.publish(stream, "new")

    assert new.offset == 1
    assert new.epoch != old.epoch
    assert (await store.read(stream, old.position)).reason == EPOCH_CHANGED
    everything = await store.read(stream, Position(new.epoch, 0))
    assert everything.publications == (new,)


async def test_a_stream_whose_log_is_gone_keeps_its_position(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store = make(case, {"*": {"max_count": None, "max_bytes": 10}})
    stream = case.stream()
    await store.publish(stream, '"abc"')
    last = await store.publish(stream, '"def"')
    _, log = keys_of(store, stream)

    await raw.delete(log)  # as an age-bounded log expires

    assert (await store.read(stream, last.position)).recovered
    assert (await store.read(stream, Position(last.epoch, 1))).reason == OUTSIDE_WINDOW
    # The byte count starts again from nothing: 10 bytes fit.
    fits = await store.publish(stream, '"abcdefgh"')
    assert fits.position == Position(last.epoch, 3)
    kept = await store.read(stream, last.position)
    assert kept.publications == (fits,)


async def test_flush_removes_only_its_own_prefix(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store = make(case)
    longer = make(case, prefix=f"{case.prefix}0")
    glob = make(case, prefix=f"{case.prefix}?")
    stream = case.stream()
    for each in (store, longer, glob):
        await each.publish(stream, "1")

    await glob.flush()
    await store.flush()

    assert await raw.exists(*keys_of(store, stream)) == 0
    assert await raw.exists(*keys_of(glob, stream)) == 0
    assert await raw.exists(*keys_of(longer, stream)) == 2


async def test_publishes_from_other_event_loops_reach_a_listener(
    case: StoreCase,
) -> None:
    store = make(case)
    stream = case.stream()
    recorder = Recorder()
    await store.listen(stream, recorder)

    def in_a_thread(data: str) -> Publication:
        return asyncio.run(store.publish(stream, data))

    def in_a_sync_view(data: str) -> Publication:
        return async_to_sync(store.publish)(stream, data)

    # Each call runs on a new loop, which closes its connections as it ends.
    first = await asyncio.to_thread(in_a_thread, "1")
    second = await asyncio.to_thread(in_a_thread, "2")
    third = await asyncio.to_thread(in_a_sync_view, "3")

    assert [p.offset for p in (first, second, third)] == [1, 2, 3]
    assert await recorder.wait_for(3) == [first, second, third]


async def test_a_payload_over_max_bytes_is_refused_before_reaching_redis(
    case: StoreCase, raw: redis.asyncio.Redis
) -> None:
    store = make(case, {"*": {"max_bytes": 4}})
    stream = case.stream()

    with pytest.raises(ValueError, match="max_bytes"):
        await store.publish(stream, '"too long"')

    assert await raw.exists(*keys_of(store, stream)) == 0


async def test_an_aged_out_stream_keeps_its_epoch_while_a_process_listens(
    case: StoreCase,
) -> None:
    store, listening = make(case, {"*": {"max_age": 30}}), make(case)
    stream = case.stream()
    last = await store.publish(stream, "1")
    await listening.listen(stream, Recorder())
    case.clock.now += 3600

    history = await store.read(stream, last.position)

    assert history.recovered
    assert (await store.publish(stream, "2")).position == Position(last.epoch, 2)


async def test_a_listener_on_another_event_loop_is_called_on_it(
    case: StoreCase,
) -> None:
    store = make(case)
    stream = case.stream()
    here = Recorder()
    await store.listen(stream, here)  # the pub/sub connection lives here
    listening = threading.Event()

    async def elsewhere() -> list[Publication]:
        recorder = Recorder()
        await store.listen(stream, recorder)
        listening.set()
        received = await recorder.wait_for(1)
        await store.unlisten(stream, recorder)
        return received

    thread = asyncio.ensure_future(asyncio.to_thread(asyncio.run, elsewhere()))
    await asyncio.to_thread(listening.wait, WAIT)
    publication = await store.publish(stream, "1")

    assert await thread == [publication]
    assert await here.wait_for(1) == [publication]


async def test_listening_moves_to_another_loop_when_its_loop_ends(
    case: StoreCase,
) -> None:
    store = make(case)
    stream = case.stream()

    async def listen_and_leave() -> None:
        recorder = Recorder()
        await store.listen(stream, recorder)
        await store.unlisten(stream, recorder)

    await asyncio.to_thread(asyncio.run, listen_and_leave())
    recorder = Recorder()
    await store.listen(stream, recorder)
    publication = await store.publish(stream, "1")

    assert await recorder.wait_for(1) == [publication]
    assert recorder.resyncs == []


async def test_one_big_payload_trims_many_small_ones_by_bytes(case: StoreCase) -> None:
    store = make(case, {"*": {"max_count": None, "max_bytes": 100}})
    stream = case.stream()
    for n in range(100):
        small = await store.publish(stream, f'"{n:08}"')  # 10 bytes each

    big = await store.publish(stream, '"' + "x" * 98 + '"')

    kept = await store.read(stream, small.position)
    assert kept.publications == (big,)
    before = Position(small.epoch, small.offset - 1)
    assert (await store.read(stream, before)).reason == OUTSIDE_WINDOW


async def test_a_tighter_policy_trims_the_whole_excess_at_once(
    case: StoreCase,
) -> None:
    loose, tight = (
        make(case, {"*": {"max_count": 500}}),
        make(case, {"*": {"max_count": 3}}),
    )
    stream = case.stream()
    for n in range(300):
        await loose.publish(stream, str(n))

    last = await tight.publish(stream, "300")

    assert last.offset == 301
    kept = await tight.read(stream, Position(last.epoch, 298))
    assert [p.data for p in kept.publications] == ["298", "299", "300"]
    gone = await tight.read(stream, Position(last.epoch, 297))
    assert gone.reason == OUTSIDE_WINDOW
