"""publish() and apublish(): when a publication is made, and when it is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from django_realtime.streams import apublish, publish, set_stream_store
from django_realtime.streams.positions import Position
from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore(PolicyTable({"small.*": {"max_bytes": 16}}))
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


async def published(store: MemoryHistoryStore, stream: str) -> list[object]:
    history = await store.read(stream, Position((await store.read(stream)).epoch, 0))
    return [json.loads(p.data) for p in history.publications]


async def test_apublish_outside_a_handler_publishes_at_once(
    store: MemoryHistoryStore,
) -> None:
    await apublish("news", {"type": "hello", "n": 1})
    assert await published(store, "news") == [{"type": "hello", "n": 1}]


@pytest.mark.django_db(transaction=True)
async def test_publish_in_a_transaction_waits_for_the_commit(
    store: MemoryHistoryStore,
) -> None:
    def work() -> int:
        with transaction.atomic():
            publish("news", "committed")
            return len(store._window("news"))

    assert await sync_to_async(work)() == 0
    assert await published(store, "news") == ["committed"]


@pytest.mark.django_db(transaction=True)
async def test_publish_in_a_rolled_back_transaction_is_dropped_unless_immediate(
    store: MemoryHistoryStore,
) -> None:
    def work() -> None:
        with transaction.atomic():
            publish("news", "kept")
            try:
                with transaction.atomic():
                    publish("news", "savepoint rolled back")
                    raise ValueError
            except ValueError:
                pass
        try:
            with transaction.atomic():
                publish("news", "rolled back")
                raise ValueError
        except ValueError:
            pass
        try:
            with transaction.atomic():
                publish("news", "immediately", immediately=True)
                raise ValueError
        except ValueError:
            pass

    await sync_to_async(work)()
    assert await published(store, "news") == ["kept", "immediately"]


async def test_a_bad_payload_fails_at_the_call(store: MemoryHistoryStore) -> None:
    with pytest.raises(TypeError):
        await apublish("news", {"when": object()})
    with pytest.raises(ValueError, match="over the stream's max_bytes"):
        await apublish("small.x", "x" * 40)
    with pytest.raises(ValueError, match="stream name"):
        await apublish("no spaces", 1)
    assert await published(store, "news") == []


def test_sync_publish_outside_a_transaction_publishes_at_once(
    store: MemoryHistoryStore,
) -> None:
    publish("news", [1, 2])
    assert [p.data for p in store._window("news")] == ["[1,2]"]
