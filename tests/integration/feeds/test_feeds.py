"""Feeds end to end in-process: snapshot, live and replayed changes, per user.

Each test runs on SQLite and on the real PostgreSQL (jobs, users and
sessions pinned to one database), with a fresh in-memory history store.
The collections are StreamClients on a FeedConsumer, applying events as
realtime.js does (tests/integration/feeds/helpers.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F

from django_realtime.delivery.sync import run_sync
from django_realtime.feeds import publish_changes, recheck, stats
from django_realtime.streams import set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.testing import RequestFailed, StreamClient
from example_project.jobs.models import Job
from tests.integration.feeds.bindings import QUERYSET_FEED, RULE_FEED, application
from tests.integration.feeds.helpers import LiveCollection, login, open_collection
from tests.session_databases import PinnedRouter, database

__all__ = ["database"]  # a fixture used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


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
    """Collect the collections a test opens, and close their clients after it."""
    collections: list[LiveCollection] = []
    yield collections
    for collection in collections:
        await collection.client.close()


def job(owner: User, kind: str = "wait") -> Job:
    return Job.objects.create(owner=owner, kind=kind, parameters={"number": 1})


ajob = sync_to_async(job)


async def people() -> tuple[dict[str, User], dict[str, bytes]]:
    users, cookies = {}, {}
    for name, staff in (("alice", False), ("bob", False), ("root", True)):
        users[name], cookies[name] = await login(name, staff=staff)
    return users, cookies


async def test_each_user_gets_their_rows_and_staff_all(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1 = await ajob(users["alice"])
    b1 = await ajob(users["bob"])
    alice, snapshot = await open_collection(cookies["alice"], RULE_FEED)
    root, _ = await open_collection(cookies["root"], RULE_FEED)
    bob, _ = await open_collection(cookies["bob"], QUERYSET_FEED)
    opened += [alice, root, bob]
    assert [row["pk"] for row in snapshot["rows"]] == [a1.pk]
    assert snapshot["version_field"] == "version"
    assert sorted(root.rows) == sorted([a1.pk, b1.pk])
    assert list(bob.rows) == [b1.pk]

    b2 = await ajob(users["bob"])
    a2 = await ajob(users["alice"])
    await Job.objects.filter(pk=a1.pk).aupdate(progress=50, version=F("version") + 1)

    assert [(e["type"], e["pk"]) for e in await alice.events(2)] == [
        ("enter", a2.pk),
        ("update", a1.pk),
    ]
    assert alice.rows[a1.pk]["progress"] == 50
    assert (await alice.events(0)) == []
    assert [e["pk"] for e in await root.events(3)] == [b2.pk, a2.pk, a1.pk]
    # Bob's feed withholds Alice's rows; the queryset rule says the same.
    assert [(e["type"], e["pk"]) for e in await bob.events(1)] == [("enter", b2.pk)]
    assert set(bob.rows) == {b1.pk, b2.pk}


async def test_rollback_publishes_nothing(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(alice)

    def rolled_back() -> None:
        with transaction.atomic(using=db_alias):
            job(users["alice"])
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        await sync_to_async(rolled_back)()
    marker = await ajob(users["alice"])
    assert [e["pk"] for e in await alice.events(1)] == [marker.pk]
    assert not await Job.objects.exclude(pk=marker.pk).aexists()


async def test_bulk_paths_publish(db_alias: str, opened: list[LiveCollection]) -> None:
    users, cookies = await people()
    a1 = await ajob(users["alice"])
    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(alice)
    owner = users["alice"]

    @sync_to_async
    def bulk() -> list[Job]:
        Job.objects.filter(owner=owner).update(progress=10, version=F("version") + 1)
        made = Job.objects.bulk_create(
            [Job(owner=owner, kind="wait", parameters={}) for _ in range(2)]
        )
        for made_job in made:
            made_job.progress = 20
        Job.objects.bulk_update(made, ["progress"])
        return made

    made = await bulk()
    events = await alice.events(5)
    assert [(e["type"], e["op"]) for e in events] == [
        ("update", "update"),
        ("enter", "create"),
        ("enter", "create"),
        ("update", "update"),
        ("update", "update"),
    ]
    assert events[0]["changed"] == ["progress", "version"]
    assert alice.rows[a1.pk]["progress"] == 10
    assert {alice.rows[m.pk]["progress"] for m in made} == {20}

    await Job.objects.filter(owner=owner).adelete()
    events = await alice.events(3)
    assert {(e["type"], e["op"], e["pk"]) for e in events} == {
        ("leave", "delete", pk) for pk in (a1.pk, made[0].pk, made[1].pk)
    }
    assert alice.rows == {}

    # Code that changes rows another way says so.
    a3 = await ajob(owner)
    await alice.events(1)
    await Job.objects.filter(pk=a3.pk).aupdate(progress=30)
    await sync_to_async(publish_changes)(Job, [a3.pk], changed=["progress"])
    (event,) = await alice.events(1)
    assert (event["type"], event["row"]["progress"]) == ("update", 30)


async def test_a_row_moving_between_users_leaves_one_and_enters_the_other(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1 = await ajob(users["alice"])
    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    bob, _ = await open_collection(cookies["bob"], QUERYSET_FEED)
    opened += [alice, bob]

    await Job.objects.filter(pk=a1.pk).aupdate(
        owner=users["bob"], version=F("version") + 1
    )
    assert [(e["type"], e["pk"]) for e in await alice.events(1)] == [("leave", a1.pk)]
    assert [(e["type"], e["pk"]) for e in await bob.events(1)] == [("enter", a1.pk)]
    assert alice.rows == {}
    assert list(bob.rows) == [a1.pk]


async def test_a_resume_replays_by_the_permissions_of_now(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1, a2 = await ajob(users["alice"]), await ajob(users["alice"])
    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(alice)

    await alice.client.drop()
    # While Alice is away: she loses a1; a2 changes; Bob's b1 is created
    # and given to her, then taken back; a row of Bob's changes.
    await Job.objects.filter(pk=a1.pk).aupdate(
        owner=users["bob"], version=F("version") + 1
    )
    await Job.objects.filter(pk=a2.pk).aupdate(progress=70, version=F("version") + 1)
    b1 = await ajob(users["bob"])
    await Job.objects.filter(pk=b1.pk).aupdate(
        owner=users["alice"], version=F("version") + 1
    )
    b2 = await ajob(users["bob"])
    await Job.objects.filter(pk=b1.pk).aupdate(
        owner=users["bob"], version=F("version") + 1
    )

    await alice.client.connect()
    await alice.client.request(
        "feed.resume", {"feed": RULE_FEED, "pks": [a1.pk, a2.pk]}
    )
    since = alice.client.positions[alice.stream]
    await alice.client.subscribe(alice.stream, since)
    events = await alice.events(2)
    # b1 is Bob's now: none of its changes reach Alice, even those made
    # while it was hers; b2 never was.
    assert [(e["type"], e["pk"]) for e in events] == [
        ("leave", a1.pk),
        ("update", a2.pk),
    ]
    assert list(alice.rows) == [a2.pk]
    assert b2.pk not in alice.rows
    marker = await ajob(users["alice"])
    assert [e["pk"] for e in await alice.events(1)] == [marker.pk]


async def test_a_recheck_sends_what_a_permission_change_moved(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    a1, b1 = await ajob(users["alice"]), await ajob(users["bob"])
    root, _ = await open_collection(cookies["root"], RULE_FEED)
    opened.append(root)
    await ajob(users["root"])
    await root.events(1)

    @sync_to_async
    def demote() -> None:
        with transaction.atomic(using=db_alias):
            User.objects.filter(pk=users["root"].pk).update(is_staff=False)
            recheck(users["root"], using=db_alias)

    await demote()
    (event,) = await root.events(1)
    assert event["type"] == "recheck"
    assert (event["enter"], sorted(event["leave"])) == ([], sorted([a1.pk, b1.pk]))
    # Not staff any more: Alice's changes are withheld from then on.
    await Job.objects.filter(pk=a1.pk).aupdate(progress=5)
    mine = await ajob(users["root"])
    assert [e["pk"] for e in await root.events(1)] == [mine.pk]


async def test_snapshot_then_live_miss_nothing_under_concurrent_writes(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    rows = [await ajob(users["alice"]) for _ in range(3)]
    started = threading.Event()
    stop = threading.Event()

    def write() -> None:
        try:
            for step in range(60):
                target = rows[step % 3]
                Job.objects.filter(pk=target.pk).update(
                    progress=step, version=F("version") + 1
                )
                started.set()
                if stop.is_set() and step > 30:
                    return
        finally:
            started.set()

    # On the sync pool, as a view or handler would write.
    writer = asyncio.ensure_future(run_sync(write))
    await sync_to_async(started.wait)()
    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(alice)
    stop.set()
    await writer
    marker = await ajob(users["alice"])
    # Read until the marker: every change after the snapshot came before it.
    while marker.pk not in alice.rows:
        await alice.events(1)

    @sync_to_async
    def current() -> dict[Any, tuple[int, int]]:
        return {j.pk: (j.progress, j.version) for j in Job.objects.all()}

    held = {pk: (row["progress"], row["version"]) for pk, row in alice.rows.items()}
    assert held == await current()


async def test_bad_input_is_refused_with_a_code_that_names_it(
    db_alias: str, opened: list[LiveCollection], caplog: pytest.LogCaptureFixture
) -> None:
    users, cookies = await people()
    client = StreamClient(application(), "/ws/feeds/", [(b"cookie", cookies["alice"])])
    await client.connect()
    try:
        for data, code in [
            ({"feed": "nope.nope"}, "unknown_feed"),
            ({"feed": "jobs.job"}, "unknown_feed"),  # not served by this consumer
            ({}, "bad_parameters"),
            ("test.jobs", "bad_parameters"),
            ({"feed": 3}, "bad_parameters"),
        ]:
            with pytest.raises(RequestFailed) as refused:
                await client.request("feed.snapshot", data)
            assert refused.value.code == code, data
        for data in [
            {"feed": RULE_FEED, "pks": "1,2"},
            {"feed": RULE_FEED, "pks": [[1]]},
            {"feed": RULE_FEED, "pks": list(range(10_001))},
        ]:
            with pytest.raises(RequestFailed) as refused:
                await client.request("feed.resume", data)
            assert refused.value.code == "bad_parameters"
        with pytest.raises(RequestFailed) as refused:
            await client.subscribe("feed.nope")
        assert refused.value.code == "forbidden"
    finally:
        await client.close()

    alice, _ = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(alice)
    with pytest.raises(RequestFailed) as refused:
        await alice.client.request("feed.snapshot", {"feed": RULE_FEED})
    assert refused.value.code == "subscribed"

    errors = stats.serialize_errors
    await ajob(users["alice"], kind="explode")
    fine = await ajob(users["alice"])
    # The row that cannot be serialised is skipped, and only it.
    assert [e["pk"] for e in await alice.events(1)] == [fine.pk]
    assert stats.serialize_errors == errors + 1
    assert "Could not serialise" in caplog.text
    again, snapshot = await open_collection(cookies["alice"], RULE_FEED)
    opened.append(again)
    assert [row["pk"] for row in snapshot["rows"]] == [fine.pk]


async def test_permission_queries_do_not_grow_with_subscribers(
    db_alias: str, opened: list[LiveCollection]
) -> None:
    users, cookies = await people()
    owners = []
    for name in ["alice", "bob"] * 4:
        for feed in (RULE_FEED, QUERYSET_FEED):
            opened.append((await open_collection(cookies[name], feed))[0])
            owners.append(name)
    before = stats.permission_queries
    for name in ["alice", "bob", "alice", "bob"]:
        await ajob(users[name])
    for name, collection in zip(owners, opened, strict=True):
        await collection.events(2)
        assert all(
            row["owner_id"] == users[name].pk for row in collection.rows.values()
        )
    # 16 subscribers, 4 publications: at most one query a publication for the
    # row rule, and one per audience (Alice's, Bob's) for the queryset rule.
    queries = stats.permission_queries - before
    assert 3 <= queries <= 4 * (1 + 2), queries
