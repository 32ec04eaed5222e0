"""Presence in one process, on the in-memory store: members, diffs, bad input."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from django.test import override_settings

from django_realtime.presence import amembers, members
from django_realtime.presence.api import get_tracker
from django_realtime.testing import StreamClient
from django_realtime.testing.streams import RequestFailed
from tests.integration.presence.helpers import Room, User, as_user, watch

pytestmark = pytest.mark.timeout(20)

ALICE, BOB, CAROL = User(1, "alice"), User(2, "bob"), User(3, "carol")
GRACE = 0.3


@pytest.fixture(autouse=True)
async def short_times() -> AsyncIterator[None]:
    presence = {"GRACE": GRACE, "EXPIRY": 2, "BATCH": 0.02}
    with override_settings(REALTIME={"PRESENCE": presence}):
        yield
        await get_tracker().stop()
    Room.info_override = None


APP = Room.as_asgi()


async def test_a_subscriber_gets_the_members_then_joins_and_leaves() -> None:
    alice = await watch(APP, ALICE, "room.a")
    await alice.until({"alice"})
    bob = await watch(APP, BOB, "room.a")
    assert bob.names() == {"alice", "bob"}
    await alice.until({"alice", "bob"})
    assert alice.members["2"]["info"] == {"id": 2, "username": "bob"}
    await bob.client.close()
    await alice.until({"alice"})
    assert await amembers("room.a") == alice.members


async def test_three_connections_of_one_user_count_once_and_leave_once() -> None:
    watcher = await watch(APP, CAROL, "room.b")
    tabs = [await watch(APP, ALICE, "room.b") for _ in range(3)]
    await watcher.until({"alice", "carol"})
    await watcher.drain(0.1)
    assert watcher.members["1"]["connections"] == 3
    for tab in tabs[:2]:
        await tab.client.close()
    await asyncio.sleep(GRACE * 2)
    await tabs[2].until({"alice", "carol"})
    assert (await amembers("room.b"))["1"]["connections"] == 1
    await tabs[2].client.close()
    await watcher.until({"carol"})
    leaves = [d for d in watcher.diffs if "1" in d["leaves"]]
    assert len(leaves) == 1


async def test_a_reconnect_within_the_grace_period_is_no_leave_and_join() -> None:
    watcher = await watch(APP, CAROL, "room.c")
    alice = await watch(APP, ALICE, "room.c")
    await watcher.until({"alice", "carol"})
    await alice.client.drop()
    await alice.client.reconnect()
    await watcher.drain(GRACE * 2)
    assert (await amembers("room.c")).keys() == {"1", "3"}
    assert not any("1" in d["leaves"] for d in watcher.diffs)
    await alice.client.close()
    await watcher.until({"carol"})


async def test_a_burst_of_joins_is_a_few_diffs() -> None:
    watcher = await watch(APP, CAROL, "room.d")
    await watcher.until({"carol"})
    tracker = get_tracker()
    for n in range(200):
        await tracker.join("room.d", f"u{n}", f'{{"username":"u{n}"}}')
    await watcher.until({"carol"} | {f"u{n}" for n in range(200)})
    assert len(watcher.diffs) <= 5


async def test_anonymous_users_see_the_members_without_being_one() -> None:
    alice = await watch(APP, ALICE, "room.e")
    anonymous = await watch(APP, None, "room.e")
    assert anonymous.names() == {"alice"}
    await asyncio.sleep(0.1)
    assert (await amembers("room.e")).keys() == {"1"}
    await alice.client.close()


async def test_the_sync_twin_lists_the_members() -> None:
    from asgiref.sync import sync_to_async

    alice = await watch(APP, ALICE, "room.f")
    listed = await sync_to_async(members)("room.f")
    assert listed == {"1": listed["1"]}
    assert listed["1"]["connections"] == 1
    await alice.client.close()


async def test_presence_on_a_stream_the_client_may_not_read_is_refused() -> None:
    client = StreamClient(as_user(APP, ALICE), "/ws/")
    await client.connect()
    with pytest.raises(RequestFailed) as refused:
        await client.subscribe("presence:secret.x")
    assert refused.value.code == "forbidden"
    with pytest.raises(RequestFailed) as refused:
        await client.subscribe("presence:quiet.x")
    assert refused.value.code == "forbidden"
    assert await amembers("secret.x") == {}
    await client.close()


async def test_a_snapshot_of_a_stream_not_subscribed_is_refused() -> None:
    client = StreamClient(as_user(APP, ALICE), "/ws/")
    await client.connect()
    with pytest.raises(RequestFailed) as refused:
        await client.request("presence.members", {"stream": "room.g"})
    assert refused.value.code == "not_subscribed"
    await client.close()


@pytest.mark.parametrize(
    ("info", "says"),
    [({"bio": "x" * 1100}, "at most 1024 bytes"), ({"when": object()}, "JSON")],
)
async def test_member_info_too_big_or_unencodable_is_refused_at_the_server(
    info: object, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    Room.info_override = info
    client = StreamClient(as_user(APP, ALICE), "/ws/")
    await client.connect()
    with (
        caplog.at_level(logging.ERROR, "django_realtime.presence"),
        pytest.raises(RequestFailed),
    ):
        await client.subscribe("presence:room.h")
    assert says in caplog.text
    assert await amembers("room.h") == {}
    await client.close()


async def test_a_resume_gets_the_diffs_it_missed() -> None:
    watcher = await watch(APP, CAROL, "room.i")
    await watcher.client.drop()
    alice = await watch(APP, ALICE, "room.i")
    (resumed,) = await watcher.client.reconnect()
    assert resumed["recovered"]
    await watcher.until({"alice", "carol"})
    await alice.client.close()


async def test_the_ops_page_lists_the_streams_with_members_here() -> None:
    from django_realtime.presence.api import ops_rows

    tabs = [await watch(APP, ALICE, "room.ops") for _ in range(2)]
    bob = await watch(APP, BOB, "room.ops")
    await bob.until({"alice", "bob"})

    rows = await ops_rows()

    assert {
        "stream": "room.ops",
        "members here": 2,
        "connections here": 3,
        "members in all processes": 2,
    } in rows
    for watcher in (*tabs, bob):
        await watcher.client.close()
