"""Presence shared by two processes (Redis, PostgreSQL, a SQLite file): diffs, sweeps.

Each test runs on every shared backend; the "other process" is a second
tracker with a store and backend of its own on the same Redis, database
or file. The last test is the Redis backend's alone: its clients close
with their event loops.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from django.test import override_settings

from django_realtime.presence import amembers
from django_realtime.presence.api import get_tracker
from django_realtime.presence.backends import MemoryPresence, PresenceBackend
from django_realtime.presence.model import Change
from django_realtime.presence.postgres import PostgresPresence
from django_realtime.presence.redis import RedisPresence
from django_realtime.presence.sqlite import SQLitePresence
from django_realtime.presence.tracker import PresenceOptions, Tracker
from django_realtime.streams.stores.base import HistoryStore
from django_realtime.streams.stores.postgres import PostgresHistoryStore
from django_realtime.streams.stores.redis import RedisHistoryStore
from django_realtime.streams.stores.sqlite import SQLiteHistoryStore
from tests.integration.presence.helpers import Room, User, watch
from tests.integration.presence.postgres_tables import empty_presence_tables

pytestmark = pytest.mark.timeout(30)

URL = "redis://127.0.0.1:6379"
OPTIONS = PresenceOptions(expiry=1.0, grace=0.2, batch=0.02)
APP = Room.as_asgi()


POSTGRES = pytest.param(
    "postgres",
    marks=[
        pytest.mark.postgres,
        pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
    ],
)


@pytest.fixture(params=["redis", "sqlite", POSTGRES])
async def shared(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], Tracker]]:
    """Serve from a shared store; return a maker of other processes' trackers."""
    name = f"pt-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "streams.sqlite3"
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        store = {
            "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
            "OPTIONS": {"url": URL, "prefix": name},
        }
    elif request.param == "postgres":
        store = {
            "BACKEND": "django_realtime.streams.stores.postgres.PostgresHistoryStore",
            "OPTIONS": {"alias": "postgres", "poll_interval": 0.2},
        }
    else:
        store = {
            "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
            "OPTIONS": {"path": str(path), "poll_interval": 0.2},
        }
    realtime = {
        "STREAM_STORE": store,
        "PRESENCE": {"EXPIRY": 1.0, "GRACE": 0.2, "BATCH": 0.02},
    }

    def other_process() -> Tracker:
        backend: PresenceBackend
        history: HistoryStore
        if request.param == "redis":
            history = RedisHistoryStore(URL, prefix=name)
            backend = RedisPresence(URL, name)
        elif request.param == "postgres":
            history = PostgresHistoryStore("postgres", poll_interval=0.2)
            backend = PostgresPresence("postgres")
        else:
            history = SQLiteHistoryStore(path, poll_interval=0.2)
            backend = SQLitePresence(path)
        return Tracker(history, backend, OPTIONS)

    with override_settings(REALTIME=realtime):
        yield other_process
        tracker = get_tracker()
        await close(tracker, store=False)
        if request.param == "postgres":
            await tracker.store.flush()
            await empty_presence_tables()
        await tracker.store.close()
    if request.param == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(URL)
        keys = [k async for k in redis.scan_iter(f"{name}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def close(tracker: Tracker, *, store: bool = True) -> None:
    """Stop ``tracker`` once the departures its clients left are applied.

    Otherwise a grace period that ends later opens the backend and the
    store again (with PostgreSQL: connections that outlive the test).
    """
    await tracker.stop()
    for conn in tracker.departed:
        tracker.departed[conn] = 0.0
    await tracker._expire()
    if tracker._flush is not None:
        tracker._flush.cancel()
    await tracker.flush()
    await tracker.backend.close()
    if store:
        await tracker.store.close()


async def test_members_of_another_process_are_seen_and_swept_when_it_dies(
    shared: Callable[[], Tracker],
) -> None:
    alice = await watch(APP, User(1, "alice"), "room.r")
    await alice.until({"alice"})
    other = shared()
    for n in range(20):
        await other.join("room.r", f"b{n}", f'{{"username":"b{n}"}}')
    await alice.until({"alice"} | {f"b{n}" for n in range(20)})
    # The other process stops beating, as after kill -9: nothing says goodbye.
    await other.stop()
    await alice.until({"alice"}, timeout=10)
    assert (await amembers("room.r")).keys() == {"1"}
    await close(other)
    await alice.client.close()


async def test_a_process_swept_while_cut_off_tracks_its_members_again(
    shared: Callable[[], Tracker],
) -> None:
    alice = await watch(APP, User(1, "alice"), "room.s")
    other = shared()
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


async def test_a_member_moving_to_another_process_does_not_leave(
    shared: Callable[[], Tracker],
) -> None:
    watcher = await watch(APP, User(3, "carol"), "room.t")
    alice = await watch(APP, User(1, "alice"), "room.t")
    await watcher.until({"alice", "carol"})
    other = shared()
    await alice.client.close()
    await other.join("room.t", "1", '{"id":1,"username":"alice"}')
    await watcher.drain(OPTIONS.grace * 3)
    assert watcher.names() == {"alice", "carol"}
    assert not any("1" in d["leaves"] for d in watcher.diffs)
    assert (await amembers("room.t"))["1"]["connections"] == 1
    await close(other)
    await watcher.client.close()


async def test_a_failed_step_is_made_good_at_the_next_beat(
    shared: Callable[[], Tracker],
) -> None:
    watcher = await watch(APP, User(3, "carol"), "room.u")
    other = shared()
    await other.join("room.u", "bob", '{"username":"bob"}')
    await watcher.until({"bob", "carol"})
    # Its Redis client breaks: the departure cannot be written.
    real = other.backend
    other.backend = Broken()
    other.leave(next(iter(other.connections)))
    await asyncio.sleep(OPTIONS.grace * 2)
    assert "bob" in watcher.names()
    other.backend = real
    await other.beat()
    await watcher.until({"carol"})
    await close(other)
    await watcher.client.close()


class Broken(MemoryPresence):
    """A backend that cannot be reached."""

    async def untrack(
        self, stream: str, conn: str, process: str | None = None
    ) -> list[Change]:
        raise ConnectionError("unreachable")


async def test_a_change_a_dead_process_did_not_publish_is_published_by_its_sweep(
    shared: Callable[[], Tracker],
) -> None:
    watcher = await watch(APP, User(3, "carol"), "room.v")
    other = shared()
    conn = await other.join("room.v", "bob", '{"username":"bob"}')
    await watcher.until({"bob", "carol"})
    # Bob's last connection goes, and the process dies before its diff is out.
    await other.stop()
    await other.backend.untrack("room.v", conn)
    await watcher.drain(OPTIONS.batch * 5)
    assert "bob" in watcher.names()
    # Swept once silent for the expiry: the leave it never published goes out.
    await watcher.until({"carol"}, timeout=10)
    await close(other)
    await watcher.client.close()


async def test_a_connection_joined_by_id_on_two_processes_is_one_and_leaves_once(
    shared: Callable[[], Tracker],
) -> None:
    # A client of the HTTP transports: its requests land on either process.
    watcher = await watch(APP, User(3, "carol"), "room.w")
    one, two = shared(), shared()
    conn, info = "http/c1/room.w", '{"username":"dave"}'
    await one.join("room.w", "dave", info, conn=conn)
    await watcher.until({"carol", "dave"})
    one.leave(conn)
    await two.join("room.w", "dave", info, conn=conn)
    # One's grace period ends: it no longer owns the connection.
    await watcher.drain(OPTIONS.grace * 3)
    assert not one.connections
    two.leave(conn)
    await two.join("room.w", "dave", info, conn=conn)
    await one.join("room.w", "dave", info, conn=conn)
    await one.join("room.w", "dave", info, conn=conn)
    two.leave(conn)
    one.leave(conn)
    await watcher.drain(OPTIONS.grace * 3)
    assert (await amembers("room.w"))["dave"]["connections"] == 1
    assert not any("dave" in d["leaves"] for d in watcher.diffs)
    one.leave(conn)
    await watcher.until({"carol"})
    assert sum("dave" in d["leaves"] for d in watcher.diffs) == 1
    assert sum("dave" in d["joins"] for d in watcher.diffs) == 1
    await close(one)
    await close(two)
    await watcher.client.close()


def redis_clients_named(name: str, expected: int, within: float = 5.0) -> int:
    """Count Redis's connections named ``name`` once ``expected``, or at the deadline.

    Redis drops a closed connection from its list when it reads the close,
    which may come after another client's next command.
    """
    from redis import Redis

    deadline = time.monotonic() + within
    with Redis.from_url(URL) as redis:
        while True:
            count = sum(1 for c in redis.client_list() if c["name"] == name)
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.05)


@pytest.mark.redis
def test_a_redis_client_opened_on_a_loop_closes_as_the_loop_ends() -> None:
    # asyncio.run (as async_to_sync) runs each call on a loop of its own.
    prefix = f"pt-{uuid.uuid4().hex[:8]}"
    backend = RedisPresence(URL, prefix)
    for _ in range(3):
        assert asyncio.run(backend.snapshot("room.z")) == (0, {})
        assert redis_clients_named(f"{prefix}-presence", 0) == 0

    async def used_then_closed() -> int:
        await backend.snapshot("room.z")
        await backend.close()
        # Counted while this loop still runs: close() closed its client.
        return await asyncio.to_thread(redis_clients_named, f"{prefix}-presence", 0)

    assert asyncio.run(used_then_closed()) == 0
