"""After a wave of connections has gone, the process gives back what it held."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import uuid
from collections.abc import Iterator
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


class Heap:
    """Stands for glibc's ``mallinfo2()``: bytes in use and free."""

    def __init__(self) -> None:
        self.uordblks = 40 << 20
        self.hblkhd = 1 << 20
        self.fordblks = 300 << 20

    def __call__(self) -> Heap:
        return self


@pytest.fixture
def small_waves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    trims: list[int] = []

    def trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(release, "MIN_DROP", 4)
    monkeypatch.setattr(release, "QUIET", 0.1)
    monkeypatch.setattr(release, "_malloc_trim", trim)
    monkeypatch.setattr(release, "_mallinfo2", Heap())
    monkeypatch.setattr(release, "_peak", 0)
    yield trims
    release._stop_retrims()


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


async def _run_many_tasks(count: int) -> None:
    # In a function of its own: a tracer's snapshot of the test's locals
    # would keep the tasks alive.
    tasks = [asyncio.ensure_future(asyncio.sleep(0)) for _ in range(count)]
    await asyncio.wait(tasks)


def _task_table() -> set[Any]:
    """Return asyncio's table of tasks (a private attribute, renamed in 3.12)."""
    tasks = getattr(asyncio.tasks, "_all_tasks", None)
    if tasks is None:
        tasks = asyncio.tasks._scheduled_tasks  # type: ignore[attr-defined]
    data: set[Any] = tasks.data
    return data


async def test_the_release_shrinks_the_tables_that_held_the_crowd(
    small_waves: list[int],
) -> None:
    """The drain's registry, asyncio's tasks and the layer's channels."""
    from django_realtime import drain
    from django_realtime.layers.memory import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    old = channel_layers.set("idle-test", layer)
    try:
        channels = [await layer.new_channel() for _ in range(5000)]
        for channel in channels:
            await layer.group_add("crowd", channel)
        for channel in channels:
            await layer.group_discard("crowd", channel)
        await _run_many_tasks(20_000)
        consumers = [object() for _ in range(5000)]
        for consumer in consumers:
            drain.track(consumer)
        for consumer in consumers:
            drain.untrack(consumer)
        before = (
            sys.getsizeof(_task_table()),
            sys.getsizeof(drain._live),
            sys.getsizeof(layer._core._groups_of),
        )
        await release.release()
        after = (
            sys.getsizeof(_task_table()),
            sys.getsizeof(drain._live),
            sys.getsizeof(layer._core._groups_of),
        )
        shrunk = [now < was // 10 for now, was in zip(after, before, strict=True)]
        assert shrunk == [True, True, True], (before, after)
        assert small_waves == [0]
    finally:
        channel_layers.backends.pop("idle-test", None)
        if old is not None:
            channel_layers.set("idle-test", old)


async def test_the_trim_repeats_at_doubling_intervals_while_the_heap_is_loose(
    small_waves: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release, "RETRIM", 0.1)
    monkeypatch.setattr(release, "RETRIM_MAX", 0.4)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    def trim(pad: int) -> int:
        times.append(loop.time())
        return 1

    monkeypatch.setattr(release, "_malloc_trim", trim)
    await release.release()
    await asyncio.sleep(1.6)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    # 0.1, 0.2, 0.4, then capped at 0.4 (plus the timers' slack).
    assert 5 <= len(times) <= 7, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert max(gaps) < 0.55, gaps
    # The heap is in use again (a new wave filled it): the trims stop.
    heap = release._mallinfo2
    heap.uordblks, heap.fordblks = 300 << 20, 40 << 20  # type: ignore[union-attr]
    await asyncio.sleep(0.5)
    count = len(times)
    await asyncio.sleep(0.9)
    assert len(times) == count


async def test_a_new_wave_of_closes_stops_the_repeated_trims(
    small_waves: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release, "RETRIM", 1.0)
    await release.release()
    assert _retrims_pending()
    release.opened(10)
    release.closed(2)  # a drop of 8: a release is due, the repeats stop
    assert not _retrims_pending()
    await asyncio.sleep(0.5)
    assert small_waves == [0, 0]  # the first release, then the new one


def test_the_type_cache_lets_go_of_names_made_for_one_lookup() -> None:
    class Thing:
        pass

    name = "".join(["one_off_", "name"])  # a new str, as a C caller makes
    before = sys.getrefcount(name)
    getattr(Thing(), name, None)
    # CPython's cache of lookups keeps the name (in a slot of its own)...
    assert sys.getrefcount(name) == before + 1
    release._clear_type_cache()
    # ...until the release empties it.
    assert sys.getrefcount(name) == before


def _retrims_pending() -> bool:
    return release._retrim is not None


def test_malloc_trim_and_the_heap_figures_are_found_on_glibc() -> None:
    assert release._find_malloc_trim() is not None
    figures = release.heap()
    assert figures is not None
    used, free = figures
    blob = bytearray(8 << 20)  # glibc maps a block this large on its own
    assert release.heap()[0] >= used + len(blob)  # type: ignore[index]
    assert free >= 0


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
