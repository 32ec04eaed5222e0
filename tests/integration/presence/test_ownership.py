"""The owner of a connection, on every backend: the last process that tracked it.

A client of the HTTP transports has one connection id on every process
(``http/<client id>``). Tracking it where another process holds it moves
it with no change; an untrack from a process it has left, or the sweep of
such a process, changes nothing. One body per rule, run on the in-process
backend, Redis, a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from django_realtime.presence.backends import MemoryPresence, PresenceBackend
from django_realtime.presence.postgres import PostgresPresence
from django_realtime.presence.redis import RedisPresence
from django_realtime.presence.sqlite import SQLitePresence
from tests.integration.presence.postgres_tables import empty_presence_tables

pytestmark = pytest.mark.timeout(20)

URL = "redis://127.0.0.1:6379"


class Clock:
    """The SQLite backend's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POSTGRES = pytest.param(
    "postgres",
    marks=[
        pytest.mark.postgres,
        pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
    ],
)


@pytest.fixture(params=["memory", "redis", "sqlite", POSTGRES])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[PresenceBackend]:
    made: PresenceBackend
    prefix = f"po-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        made = MemoryPresence()
    elif request.param == "redis":
        request.applymarker(pytest.mark.redis)
        made = RedisPresence(URL, prefix)
    elif request.param == "postgres":
        made = PostgresPresence("postgres")
    else:
        made = SQLitePresence(tmp_path / "presence.sqlite3", clock=Clock())
    yield made
    await made.close()
    if request.param == "postgres":
        await empty_presence_tables()
    if request.param == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(URL)
        keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def count(backend: PresenceBackend, key: str) -> int:
    _, members = await backend.snapshot("room")
    return int(members[key]["connections"]) if key in members else 0


async def test_tracking_a_connection_another_process_holds_moves_it_silently(
    backend: PresenceBackend,
) -> None:
    assert len(await backend.track("room", "http/c1", "alice", "{}", "a")) == 1
    version, _ = await backend.snapshot("room")
    assert await backend.track("room", "http/c1", "alice", "{}", "b") == []
    assert (await backend.snapshot("room"))[0] == version
    assert await count(backend, "alice") == 1


async def test_only_the_owner_of_a_connection_untracks_it(
    backend: PresenceBackend,
) -> None:
    await backend.track("room", "http/c1", "alice", "{}", "a")
    await backend.track("room", "http/c1", "alice", "{}", "b")
    assert await backend.untrack("room", "http/c1", "a") == []
    assert await count(backend, "alice") == 1
    (left,) = await backend.untrack("room", "http/c1", "b")
    assert (left.key, left.record.connections) == ("alice", 0)
    assert await count(backend, "alice") == 0


async def test_a_sync_leaves_a_connection_that_moved_with_its_new_owner(
    backend: PresenceBackend,
) -> None:
    await backend.track("room", "http/c1", "alice", "{}", "a")
    await backend.track("room", "http/c1", "alice", "{}", "b")
    assert await backend.sync("room", "a", {"http/c1": ("alice", "{}")}) == []
    assert await backend.untrack("room", "http/c1", "a") == []
    assert await backend.sync("room", "a", {}) == []
    assert await count(backend, "alice") == 1


async def test_the_sweep_of_a_dead_process_drops_only_what_it_still_owned(
    backend: PresenceBackend,
) -> None:
    if not backend.shared:
        pytest.skip("one process: nothing to sweep")
    await backend.heartbeat("dead", {"room"})
    await backend.track("room", "http/c1", "alice", "{}", "dead")
    await backend.track("room", "dead/1", "bob", "{}", "dead")
    await backend.heartbeat("live", {"room"})
    await backend.track("room", "http/c1", "alice", "{}", "live")
    expiry = 0.0
    if isinstance(backend, SQLitePresence):
        assert isinstance(backend.clock, Clock)
        backend.clock.now += 60
        await backend.heartbeat("live", {"room"})
        expiry = 30.0
    swept = await backend.sweep("live", expiry)
    # (With the changes not yet published, which the sweep publishes again.)
    assert {c.key for c in swept["room"] if not c.record.connections} == {"bob"}
    assert await count(backend, "alice") == 1
    assert await count(backend, "bob") == 0
