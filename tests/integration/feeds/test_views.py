"""Views of a feed: one row, or a named query's rows, on SQLite and PostgreSQL.

The same fixtures as test_feeds.py: each test runs on both databases with
a fresh in-memory history store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db.models import F

from django_realtime.delivery.sync import run_sync
from django_realtime.feeds import recheck, stats
from django_realtime.streams import set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.testing import RequestFailed
from example_project.jobs.models import Job
from tests.integration.feeds.bindings import QUERYSET_FEED, RULE_FEED
from tests.integration.feeds.helpers import LiveCollection, login, open_collection
from tests.session_databases import PinnedRouter, database

__all__ = ["database"]  # a fixture used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

RUNNING = {"query": "status", "params": {"status": "running"}}


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


@pytest.fixture
def db_alias(database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Keep jobs beside users and sessions: on SQLite, then on PostgreSQL."""
    monkeypatch.setattr(PinnedRouter, "models", PinnedRouter.models | {("jobs", "job")})
    return database


@pytest.fixture
async def opened() -> AsyncIterator[list[LiveCollection]]:
    collections: list[LiveCollection] = []
    yield collections
    for collection in collections:
        await collection.client.close()


@sync_to_async
def ajob(owner: User, status: str = "queued") -> Job:
    return Job.objects.create(
        owner=owner, kind="wait", parameters={"number": 1}, status=status
    )


async def change(job: Job, **values: Any) -> None:
    """Update ``job`` through FeedQuerySet.update() (which adds to its version)."""
    await Job.objects.filter(pk=job.pk).aupdate(**values)


async def people() -> tuple[dict[str, User], dict[str, bytes]]:
    users, cookies = {}, {}
    for name, staff in (("alice", False), ("bob", False), ("root", True)):
        users[name], cookies[name] = await login(name, staff=staff)
    return users, cookies


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(e["type"], e["pk"]) for e in events]


# -- End to end ---------------------------------------------------------------


async def test_a_row_view_gets_its_row_its_changes_and_leave(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1, a2 = await ajob(users["alice"]), await ajob(users["alice"])
    b1 = await ajob(users["bob"])
    # A key as a string names the row as well.
    alice, snapshot = await open_collection(
        cookies["alice"], RULE_FEED, {"pk": str(a1.pk)}
    )
    theirs, other = await open_collection(
        cookies["alice"], QUERYSET_FEED, {"pk": b1.pk}
    )
    opened += [alice, theirs]
    assert (snapshot["pk"], list(alice.rows)) == (a1.pk, [a1.pk])
    # A row the user may not read gives an empty view, not its existence.
    assert other["rows"] == []

    # Permissions are those of delivery time: each step is awaited.
    await change(a2, progress=10)  # another row: withheld
    await change(a1, progress=20)
    (event,) = await alice.events(1)
    assert (event["type"], event["row"]["progress"]) == ("update", 20)
    await change(a1, owner=users["bob"])  # Alice loses it
    assert kinds(await alice.events(1)) == [("leave", a1.pk)]
    await change(a1, owner=users["alice"])  # and gets it back
    assert kinds(await alice.events(1)) == [("enter", a1.pk)]
    await Job.objects.filter(pk=a1.pk).adelete()
    marker = await ajob(users["alice"])
    await change(b1, owner=users["alice"])
    assert kinds(await alice.events(1)) == [("leave", a1.pk)]
    assert alice.rows == {}
    assert marker.pk not in alice.rows
    # b1 moved into Alice's rows: her view of it (a queryset rule) enters.
    assert kinds(await theirs.events(1)) == [("enter", b1.pk)]


async def test_a_query_view_gets_enter_and_leave_as_rows_move_in_and_out(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1 = await ajob(users["alice"])
    a2 = await ajob(users["alice"], status="running")
    b1 = await ajob(users["bob"], status="running")
    alice, snapshot = await open_collection(cookies["alice"], RULE_FEED, RUNNING)
    root, _ = await open_collection(cookies["root"], RULE_FEED, RUNNING)
    bob, _ = await open_collection(cookies["bob"], QUERYSET_FEED, {"query": "running"})
    opened += [alice, root, bob]
    assert (snapshot["query"], snapshot["params"]) == ("status", {"status": "running"})
    assert list(alice.rows) == [a2.pk]
    assert sorted(root.rows) == sorted([a2.pk, b1.pk])
    assert list(bob.rows) == [b1.pk]

    await change(a1, status="running")
    await change(a1, progress=50)
    await change(a2, status="done")
    await change(b1, progress=5)
    await ajob(users["alice"])  # queued: outside the query
    # Permissions are those of delivery time: Bob hears of b1 before it moves.
    assert kinds(await bob.events(1)) == [("update", b1.pk)]
    await change(b1, owner=users["alice"])

    assert kinds(await alice.events(4)) == [
        ("enter", a1.pk),
        ("update", a1.pk),
        ("leave", a2.pk),
        ("enter", b1.pk),
    ]
    assert sorted(alice.rows) == sorted([a1.pk, b1.pk])
    assert kinds(await root.events(5)) == [
        ("enter", a1.pk),
        ("update", a1.pk),
        ("leave", a2.pk),
        ("update", b1.pk),
        ("update", b1.pk),
    ]
    assert kinds(await bob.events(1)) == [("leave", b1.pk)]
    assert bob.rows == {}


async def test_a_resumed_view_replays_by_the_query_and_permissions_of_now(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1 = await ajob(users["alice"], status="running")
    a2 = await ajob(users["alice"], status="running")
    alice, _ = await open_collection(cookies["alice"], RULE_FEED, RUNNING)
    opened.append(alice)
    since = alice.client.positions[alice.stream]
    await alice.client.drop()
    # Away: a1 leaves the query, a2 changes, a3 enters it and leaves again,
    # a4 enters it.
    a3 = await ajob(users["alice"])
    await change(a1, status="done")
    await change(a2, progress=40)
    await change(a3, status="running")
    await change(a3, status="failed")
    a4 = await ajob(users["alice"], status="running")

    await alice.client.connect()
    await alice.client.request(
        "feed.resume", {"feed": RULE_FEED, "pks": sorted(alice.rows), **RUNNING}
    )
    await alice.client.subscribe(alice.stream, since)
    assert kinds(await alice.events(3)) == [
        ("leave", a1.pk),
        ("update", a2.pk),
        ("enter", a4.pk),
    ]
    assert sorted(alice.rows) == sorted([a2.pk, a4.pk])


async def test_view_requests_are_refused_over_the_socket(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    _users, cookies = await people()
    alice, _ = await open_collection(cookies["alice"], QUERYSET_FEED, {"pk": 1})
    opened.append(alice)
    await alice.client.unsubscribe(alice.stream)
    for data, code in [
        ({"query": "status", "params": {"status": "running"}}, "unknown_query"),
        ({"query": "running", "params": {"x": 1}}, "bad_parameters"),
        ({"pk": "seven"}, "bad_parameters"),
    ]:
        for kind in ("feed.snapshot", "feed.resume"):
            with pytest.raises(RequestFailed) as refused:
                await alice.client.request(
                    kind, {"feed": QUERYSET_FEED, "pks": [], **data}
                )
            assert refused.value.code == code, (kind, data)


async def test_query_checks_are_one_per_batch_and_query_not_per_subscriber(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    for _ in range(6):
        for name in ("alice", "bob"):
            collection, _ = await open_collection(cookies[name], RULE_FEED, RUNNING)
            opened.append(collection)
    before = stats.permission_queries
    made = [await ajob(users[name], status="running") for name in ("alice", "bob")]
    for collection in opened:
        (event,) = await collection.events(1)
        assert event["pk"] in {m.pk for m in made}
        assert list(collection.rows.values()) == [event["row"]]
    # 12 subscribers, 2 publications: per publication at most one query,
    # the row rule's fields of the query's rows.
    queries = stats.permission_queries - before
    assert 1 <= queries <= 2, queries


async def test_the_boundary_applies_no_change_twice_under_concurrent_writes(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    rows = [await ajob(users["alice"], status="running") for _ in range(3)]
    started, stop = threading.Event(), threading.Event()

    def write() -> None:
        try:
            for step in range(60):
                # No version given: FeedQuerySet.update() adds one to it.
                Job.objects.filter(pk=rows[step % 3].pk).update(progress=step)
                started.set()
                if stop.is_set() and step > 30:
                    return
        finally:
            started.set()

    writer = asyncio.ensure_future(run_sync(write))
    await sync_to_async(started.wait)()
    whole, _ = await open_collection(cookies["alice"], RULE_FEED)
    view, _ = await open_collection(cookies["alice"], RULE_FEED, RUNNING)
    opened += [whole, view]
    stop.set()
    await writer
    marker = await ajob(users["alice"], status="running")
    for collection in (whole, view):
        while marker.pk not in collection.rows:
            await collection.events(1)

    @sync_to_async
    def current() -> dict[Any, tuple[int, int]]:
        return {j.pk: (j.progress, j.version) for j in Job.objects.all()}

    now = await current()
    for collection in (whole, view):
        held = {pk: (r["progress"], r["version"]) for pk, r in collection.rows.items()}
        assert held == now
        # Each state applied once, none older than one applied before it.
        for row in rows:
            applied = [v for pk, v in collection.versions if pk == row.pk]
            assert applied == sorted(set(applied))


async def test_update_and_bulk_update_add_one_to_the_version(db_alias: str) -> None:
    users, _cookies = await people()
    job = await ajob(users["alice"])

    @sync_to_async
    def bulk() -> tuple[int, int, int]:
        Job.objects.filter(pk=job.pk).update(progress=1)
        first = Job.objects.get(pk=job.pk).version
        Job.objects.filter(pk=job.pk).update(progress=2, version=F("version") + 5)
        second = Job.objects.get(pk=job.pk).version
        loaded = Job.objects.get(pk=job.pk)
        loaded.progress = 3
        Job.objects.bulk_update([loaded], ["progress"])
        return first, second, Job.objects.get(pk=job.pk).version

    assert await bulk() == (2, 7, 8)


async def test_save_adds_one_to_the_version_so_pages_apply_it(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    # As the admin saves: the whole row, or some fields, never the version.
    users, cookies = await people()
    job = await ajob(users["alice"])
    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(alice)

    job.progress = 60
    await job.asave()
    (event,) = await alice.events(1)
    assert (job.version, event["row"]["version"]) == (2, 2)
    job.progress = 70
    await job.asave(update_fields=["progress"])
    (event,) = await alice.events(1)
    assert event["changed"] == ["progress", "version"]
    assert alice.rows[job.pk]["progress"] == 70
    assert alice.versions == [(job.pk, 2), (job.pk, 3)]
    assert (await Job.objects.aget(pk=job.pk)).version == job.version == 3


async def test_a_recheck_of_a_query_view_keeps_to_the_query(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1 = await ajob(users["alice"], status="running")
    await ajob(users["root"])  # queued: outside the query
    mine = await ajob(users["root"], status="running")
    root, _ = await open_collection(cookies["root"], RULE_FEED, RUNNING)
    opened.append(root)
    assert sorted(root.rows) == sorted([a1.pk, mine.pk])

    @sync_to_async
    def demote() -> None:
        User.objects.filter(pk=users["root"].pk).update(is_staff=False)
        recheck(users["root"])

    await demote()
    (event,) = await root.events(1)
    assert (event["type"], event["enter"], event["leave"]) == ("recheck", [], [a1.pk])
    assert list(root.rows) == [mine.pk]
