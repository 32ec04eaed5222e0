"""Presence shared by two processes through Redis: diffs, sweeps, resyncs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from django.test import override_settings

from django_realtime.presence import amembers
from django_realtime.presence.api import get_tracker
from django_realtime.presence.redis import RedisPresence
from django_realtime.presence.tracker import PresenceOptions, Tracker
from django_realtime.streams.stores.redis import RedisHistoryStore
from tests.integration.presence.helpers import Room, User, watch

pytestmark = [pytest.mark.timeout(30), pytest.mark.redis]

URL = "redis://127.0.0.1:6379"
OPTIONS = PresenceOptions(expiry=1.0, grace=0.2, batch=0.02)
APP = Room.as_asgi()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"pt-{uuid.uuid4().hex[:8]}"
    realtime = {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
            "OPTIONS": {"url": URL, "prefix": name},
        },
        "PRESENCE": {"EXPIRY": 1.0, "GRACE": 0.2, "BATCH": 0.02},
    }
    with override_settings(REALTIME=realtime):
        yield name
        tracker = get_tracker()
        await tracker.stop()
        await tracker.backend.close()
        await tracker.store.close()
    from redis.asyncio import Redis

    redis = Redis.from_url(URL)
    keys = [k async for k in redis.scan_iter(f"{name}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def other_process(prefix: str) -> Tracker:
    """Return the tracker of a second process on the same Redis."""
    store = RedisHistoryStore(URL, prefix=prefix)
    return Tracker(store, RedisPresence(URL, prefix), OPTIONS)


async def close(tracker: Tracker) -> None:
    await tracker.stop()
    await tracker.backend.close()
    await tracker.store.close()


async def test_members_of_another_process_are_seen_and_swept_when_it_dies(
    prefix: str,
) -> None:
    alice = await watch(APP, User(1, "alice"), "room.r")
    await alice.until({"alice"})
    other = await other_process(prefix)
    for n in range(20):
        await other.join("room.r", f"b{n}", f'{{"username":"b{n}"}}')
    await alice.until({"alice"} | {f"b{n}" for n in range(20)})
    # The other process stops beating, as after kill -9: nothing says goodbye.
    await other.stop()
    await alice.until({"alice"}, timeout=10)
    assert (await amembers("room.r")).keys() == {"1"}
    await other.backend.close()
    await other.store.close()
    await alice.client.close()


async def test_a_process_swept_while_cut_off_tracks_its_members_again(
    prefix: str,
) -> None:
    alice = await watch(APP, User(1, "alice"), "room.s")
    other = await other_process(prefix)
    await other.join("room.s", "bob", '{"username":"bob"}')
    await alice.until({"alice", "bob"})
    # Cut off for longer than the expiry: the others sweep it.
    await other.stop()
    await alice.until({"alice"}, timeout=10)
    # Back: its next beat finds it was swept, and tracks bob again.
    await other.beat()
    await alice.until({"alice", "bob"})
    assert (await amembers("room.s")).keys() == {"1", "bob"}
    await close(other)
    await alice.client.close()


async def test_a_member_moving_to_another_process_does_not_leave(prefix: str) -> None:
    watcher = await watch(APP, User(3, "carol"), "room.t")
    alice = await watch(APP, User(1, "alice"), "room.t")
    await watcher.until({"alice", "carol"})
    other = await other_process(prefix)
    await alice.client.close()
    await other.join("room.t", "1", '{"id":1,"username":"alice"}')
    await watcher.drain(OPTIONS.grace * 3)
    assert watcher.names() == {"alice", "carol"}
    assert not any("1" in d["leaves"] for d in watcher.diffs)
    assert (await amembers("room.t"))["1"]["connections"] == 1
    await close(other)
    await watcher.client.close()


async def test_a_failed_step_is_made_good_at_the_next_beat(prefix: str) -> None:
    watcher = await watch(APP, User(3, "carol"), "room.u")
    other = await other_process(prefix)
    await other.join("room.u", "bob", '{"username":"bob"}')
    await watcher.until({"bob", "carol"})
    # Its Redis client breaks: the departure cannot be written.
    real = other.backend
    other.backend = RedisPresence("redis://127.0.0.1:1", prefix)
    other.leave(next(iter(other.connections)))
    await asyncio.sleep(OPTIONS.grace * 2)
    assert "bob" in watcher.names()
    other.backend = real
    await other.beat()
    await watcher.until({"carol"})
    await close(other)
    await watcher.client.close()
