"""Presence on the PostgreSQL store beyond the shared suites.

A real process killed with SIGKILL is swept by another; processes that
change the same stream at once keep counts and versions exact; a process
that tracks after it was swept is never forgotten; the sync twin reads
through Django's connection; the tables exist on PostgreSQL only.
(test_presence_shared.py and test_ownership.py run on PostgreSQL too.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings

from django_realtime.layers.postgres.schema import PRESENCE_TABLES
from django_realtime.presence.api import _backend
from django_realtime.presence.model import Batch, Change
from django_realtime.presence.postgres import PostgresPresence
from django_realtime.streams.stores.postgres import PostgresHistoryStore
from tests.integration.presence.postgres_tables import empty_presence_tables

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "postgres"]),
    pytest.mark.timeout(60),
]

# A process that tracks COUNT connections, says "ready", then beats until
# it is killed.
PEER = textwrap.dedent(
    """
    import asyncio, os, sys
    import django
    from django.conf import settings

    settings.configure(DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "postgres": {
            "ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1",
            "PORT": "5432", "USER": "postgres", "NAME": os.environ["PEER_DB"]}})
    django.setup()
    from django_realtime.presence.postgres import PostgresPresence

    async def main():
        backend = PostgresPresence("postgres")
        stream, process = "room.k", "peer"
        await backend.heartbeat(process, {stream})
        for n in range(int(os.environ["PEER_COUNT"])):
            info = '{"username":"doomed%d"}' % n
            await backend.track(stream, f"peer/{n}", f"doomed{n}", info, process)
        print("ready", flush=True)
        while True:
            await backend.heartbeat(process, {stream})
            await asyncio.sleep(0.05)

    asyncio.run(main())
    """
)


def left(changes: list[Change]) -> set[str]:
    """Return the members whose newest change in ``changes`` is a leave."""
    batch = Batch()
    batch.add("s", changes)
    return {
        key
        for key, record in batch.take().get("s", {}).items()
        if not record.connections
    }


async def publish(backend: PostgresPresence, swept: dict[str, list[Change]]) -> None:
    """Mark the changes of a sweep published, as a tracker does."""
    for stream, changes in swept.items():
        await backend.published(stream, {c.key: c.record.version for c in changes})


@pytest.fixture
async def backends() -> AsyncIterator[list[PostgresPresence]]:
    """Make backends as other processes would: each its own connections."""
    made: list[PostgresPresence] = []
    yield made
    for backend in made:
        await backend.close()
    await empty_presence_tables()


@pytest.fixture
def peer() -> Iterator[subprocess.Popen[str]]:
    environment = dict(
        os.environ,
        PEER_DB=connections["postgres"].settings_dict["NAME"],
        PEER_COUNT="100",
    )
    process = subprocess.Popen(
        [sys.executable, "-c", PEER],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()
    assert process.stdout is not None
    process.stdout.close()


async def test_a_process_killed_with_sigkill_is_swept_by_another(
    backends: list[PostgresPresence], peer: subprocess.Popen[str]
) -> None:
    here = PostgresPresence("postgres")
    backends.append(here)
    await here.heartbeat("here", {"room.k"})
    await here.track("room.k", "here/1", "stays", '{"username":"stays"}', "here")
    assert peer.stdout is not None
    assert await asyncio.to_thread(peer.stdout.readline) == "ready\n"
    _, members = await here.snapshot("room.k")
    assert len(members) == 101
    # Beating: not swept, however often others sweep.
    assert await here.sweep("here", 5.0) == {}
    peer.send_signal(signal.SIGKILL)
    await asyncio.to_thread(peer.wait)
    swept: dict[str, list[Change]] = {}
    while not swept:
        await here.heartbeat("here", {"room.k"})
        swept = await here.sweep("here", 1.0)
        await asyncio.sleep(0.1)
    assert left(swept["room.k"]) == {f"doomed{n}" for n in range(100)}
    assert (await here.snapshot("room.k"))[1].keys() == {"stays"}
    # Swept once: a second sweep finds nothing.
    assert await here.sweep("here", 1.0) == {}


async def test_processes_changing_one_stream_at_once_keep_counts_exact(
    backends: list[PostgresPresence],
) -> None:
    processes = [f"p{n}" for n in range(4)]
    backends += [PostgresPresence("postgres") for _ in processes]
    for backend, process in zip(backends, processes, strict=True):
        await backend.heartbeat(process, {"room.c"})

    async def churn(backend: PostgresPresence, process: str) -> list[Change]:
        changes: list[Change] = []
        for n in range(30):
            key = f"m{n % 5}"
            conn = f"{process}/{n}"
            changes += await backend.track("room.c", conn, key, "{}", process)
            # Every process also tracks the same shared connections.
            shared = f"http/c{n % 3}"
            changes += await backend.track("room.c", shared, "web", "{}", process)
            if n % 3 == 0:
                changes += await backend.untrack("room.c", conn, process)
        return changes

    done = await asyncio.gather(
        *(churn(b, p) for b, p in zip(backends, processes, strict=True))
    )
    changes = [change for some in done for change in some]
    version, members = await backends[0].snapshot("room.c")
    # Every change took its own version, and the stream's is the last.
    versions = sorted(c.record.version for c in changes)
    assert versions == list(range(1, version + 1))
    # 4 processes x 30 connections, a third of them gone; 3 shared ones.
    counts = {key: record["connections"] for key, record in members.items()}
    assert counts == {**{f"m{n}": 4 * 4 for n in range(5)}, "web": 3}
    assert sum(counts.values()) == 4 * 20 + 3


async def test_two_processes_sweeping_at_once_remove_each_connection_once(
    backends: list[PostgresPresence],
) -> None:
    dead, one, two = (PostgresPresence("postgres") for _ in range(3))
    backends += [dead, one, two]
    streams = [f"room.w{n}" for n in range(5)]
    await dead.heartbeat("dead", set(streams))
    for n in range(40):
        stream = streams[n % 5]
        await dead.track(stream, f"dead/{n}", f"m{n % 3}", "{}", "dead")
    await one.heartbeat("one", set(streams))
    await two.heartbeat("two", set(streams))
    first, second = await asyncio.gather(one.sweep("one", 0.0), two.sweep("two", 0.0))
    assert set(first) | set(second) == set(streams)
    for stream in streams:
        version, members = await one.snapshot(stream)
        # 8 connections came and went: 16 changes, each one version.
        assert (version, members) == (16, {})


async def test_a_process_that_tracks_after_it_was_swept_is_swept_or_told(
    backends: list[PostgresPresence],
) -> None:
    slow, live = PostgresPresence("postgres"), PostgresPresence("postgres")
    backends += [slow, live]
    await slow.heartbeat("slow", {"room.s"})
    await slow.track("room.s", "slow/1", "bob", "{}", "slow")
    await live.heartbeat("live", {"room.s"})
    swept = await live.sweep("live", 0.0)
    assert left(swept["room.s"]) == {"bob"}
    await publish(live, swept)
    # Silent for too long, yet alive: it tracks again before it beats.
    await slow.track("room.s", "slow/2", "carol", "{}", "slow")
    # Another sweep, however patient, removes it: it never beat since.
    swept = await live.sweep("live", 3600.0)
    assert left(swept["room.s"]) == {"carol"}
    await publish(live, swept)
    await slow.track("room.s", "slow/3", "dave", "{}", "slow")
    # Or it beats first: the beat says it was unknown, so it syncs again.
    assert await slow.heartbeat("slow", {"room.s"}) is True
    assert await slow.heartbeat("slow", {"room.s"}) is False
    mine = {"slow/1": ("bob", "{}"), "slow/3": ("dave", "{}")}
    changes = await slow.sync("room.s", "slow", mine)
    assert [c.key for c in changes] == ["bob"]
    assert await live.sweep("live", 3600.0) == {}
    assert (await live.snapshot("room.s"))[1].keys() == {"bob", "dave"}


async def test_the_sync_twin_reads_the_members_through_django(
    backends: list[PostgresPresence],
) -> None:
    backend = PostgresPresence("postgres")
    backends.append(backend)
    assert await sync_to_async(backend.snapshot_sync)("room.t") == (0, {})
    await backend.track("room.t", "a/1", "alice", '{"id":1}', "a")
    await backend.track("room.t", "a/2", "alice", '{"id":1}', "a")
    read = await sync_to_async(backend.snapshot_sync)("room.t")
    assert read == (2, {"alice": {"info": {"id": 1}, "connections": 2, "v": 2}})
    assert read == await backend.snapshot("room.t")


async def test_the_postgresql_store_keeps_presence_in_its_database() -> None:
    store = PostgresHistoryStore("postgres", timeout=2.0)
    with override_settings(REALTIME={}):
        backend = _backend(store)
    assert isinstance(backend, PostgresPresence)
    assert backend.shared
    assert (backend.alias, backend.timeout) == ("postgres", 2.0)
    await backend.close()
    await store.close()


def test_the_tables_are_made_on_postgresql_only() -> None:
    on_postgres = set(connections["postgres"].introspection.table_names())
    on_sqlite = set(connections["default"].introspection.table_names())
    assert set(PRESENCE_TABLES) <= on_postgres
    assert not set(PRESENCE_TABLES) & on_sqlite
