"""The PostgreSQL layer and store between real processes sharing a database.

Each test starts :mod:`tests.e2e.layers.postgres_peer` with ``subprocess``
on the test database, as ``runserver``, ``runworker`` and ``manage.py
shell`` would share the project's database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.db import connections

from django_realtime.layers.postgres import PostgresChannelLayer
from django_realtime.streams.positions import Position, Publication
from django_realtime.streams.stores.postgres import PostgresHistoryStore
from tests.e2e.layers.peers import PeerProcess

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(databases=["default", "postgres"]),
    pytest.mark.timeout(60),
]

TIMEOUT = 15.0


class Peer(PeerProcess):
    """A process of tests.e2e.layers.postgres_peer, on the test database."""

    def __init__(self, role: str, *args: str) -> None:
        dbname = connections["postgres"].settings_dict["NAME"]
        module = "tests.e2e.layers.postgres_peer"
        super().__init__(module, role, dbname, *args, timeout=TIMEOUT)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for peer in started:
        peer.stop()


@pytest.fixture
async def layer() -> AsyncIterator[PostgresChannelLayer]:
    layer = PostgresChannelLayer(alias="postgres", capacity=1000)
    yield layer
    await layer.flush()
    await layer.close()


async def receive(layer: PostgresChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def test_a_message_sent_here_is_received_by_the_other_process(
    layer: PostgresChannelLayer, peers: list[Peer]
) -> None:
    peer = Peer("receive", "room", "1")
    peers.append(peer)
    channel = (await peer.line())["channel"]

    # Over the 8,000 bytes a NOTIFY payload may hold.
    await layer.send(channel, {"type": "hello", "text": "x" * 20_000})

    assert (await peer.line())["message"] == {"type": "hello", "text": "x" * 20_000}
    assert await peer.wait() == 0


async def test_group_sends_from_a_sync_shell_reach_members_in_both_processes(
    layer: PostgresChannelLayer, peers: list[Peer]
) -> None:
    member = Peer("receive", "room", "3")
    peers.append(member)
    remote = (await member.line())["channel"]
    local = await layer.new_channel()
    await layer.group_add("room", local)

    shell = Peer("send-sync", "room", "20")
    peers.append(shell)
    leaks = await shell.line()

    assert [(await member.line())["message"]["n"] for _ in range(3)] == [0, 1, 2]
    assert [(await receive(layer, local))["n"] for _ in range(20)] == list(range(20))
    assert remote != local
    # async_to_sync makes a loop per call; the layer keeps one thread and
    # two connections whatever the number of calls.
    assert leaks["threads"][0] == leaks["threads"][1]
    assert leaks["connections"] == [2, 2]
    assert await shell.wait() == 0


class Recorder:
    def __init__(self) -> None:
        self.publications: list[Publication] = []
        self.arrived = asyncio.Event()

    def publication(self, publication: Publication) -> None:
        self.publications.append(publication)
        self.arrived.set()

    def resync(self, stream: str) -> None:
        pass


@pytest.fixture
async def store() -> AsyncIterator[PostgresHistoryStore]:
    store = PostgresHistoryStore("postgres")
    yield store
    await store.flush()
    await store.close()


async def test_a_publication_committed_by_a_process_killed_after_commit_arrives(
    store: PostgresHistoryStore, peers: list[Peer]
) -> None:
    recorder = Recorder()
    await store.listen("orders", recorder)

    publisher = Peer("atomic", "orders", "die-after-commit")
    peers.append(publisher)
    written = await publisher.line()
    assert await publisher.wait() == -9

    async with asyncio.timeout(TIMEOUT):
        await recorder.arrived.wait()
    await asyncio.sleep(0.3)  # a duplicate would arrive by now
    assert [p.offset for p in recorder.publications] == [written["written"]]
    history = await store.read("orders", Position(written["epoch"], 0))
    assert [p.data for p in history.publications] == ['"saved"']


async def test_a_rolled_back_transaction_in_another_process_publishes_nothing(
    store: PostgresHistoryStore, peers: list[Peer]
) -> None:
    recorder = Recorder()
    await store.listen("orders", recorder)

    publisher = Peer("atomic", "orders", "rollback")
    peers.append(publisher)
    written = await publisher.line()
    assert await publisher.line() == {"rolled_back": True}
    assert await publisher.wait() == 0

    await asyncio.sleep(0.3)
    assert recorder.publications == []
    history = await store.read("orders", Position(written["epoch"], 0))
    assert history.publications == ()
