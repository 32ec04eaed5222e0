"""The SQLite layer between real processes sharing one file.

Each test starts :mod:`tests.e2e.layers.sqlite_peer` with ``subprocess``
and talks to it through the file, as ``runserver``, ``runworker`` and
``manage.py shell`` do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_realtime.layers.sqlite import SQLiteChannelLayer
from django_realtime.streams.positions import Position, Publication
from django_realtime.streams.stores.sqlite import SQLiteHistoryStore
from tests.e2e.layers.peers import PeerProcess

TIMEOUT = 10.0


class Peer(PeerProcess):
    """A process of tests.e2e.layers.sqlite_peer."""

    def __init__(self, *args: str) -> None:
        super().__init__("tests.e2e.layers.sqlite_peer", *args, timeout=TIMEOUT)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "shared.sqlite3")


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for peer in started:
        peer.stop()


@pytest.fixture
async def layer(path: str) -> AsyncIterator[SQLiteChannelLayer]:
    layer = SQLiteChannelLayer(path=path, capacity=100_000)
    yield layer
    await layer.close()


async def receive(layer: SQLiteChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def test_a_message_sent_here_is_received_by_the_other_process(
    layer: SQLiteChannelLayer, path: str, peers: list[Peer]
) -> None:
    peer = Peer("receive", path, "room", "1")
    peers.append(peer)
    channel = (await peer.line())["channel"]

    await layer.send(channel, {"type": "hello", "text": "from the test"})

    assert (await peer.line())["message"] == {
        "type": "hello",
        "text": "from the test",
    }
    assert await peer.wait() == 0


async def test_group_sends_from_a_sync_shell_reach_members_in_both_processes(
    layer: SQLiteChannelLayer, path: str, peers: list[Peer]
) -> None:
    member = Peer("receive", path, "room", "3")
    peers.append(member)
    remote = (await member.line())["channel"]
    local = await layer.new_channel()
    await layer.group_add("room", local)

    shell = Peer("send-sync", path, "room", "20")
    peers.append(shell)
    leaks = await shell.line()

    assert [(await member.line())["message"]["n"] for _ in range(3)] == [0, 1, 2]
    assert [(await receive(layer, local))["n"] for _ in range(20)] == list(range(20))
    assert remote != local
    # async_to_sync makes a loop per call; the layer keeps one thread and
    # one connection to the file.
    assert leaks["threads"][1] == leaks["threads"][0]
    assert leaks["fds"][1] == leaks["fds"][0]
    assert await shell.wait() == 0


async def test_a_process_killed_mid_send_reports_nothing_it_did_not_send(
    layer: SQLiteChannelLayer, path: str, peers: list[Peer]
) -> None:
    flood = Peer("flood", path, "jobs", "100000")
    peers.append(flood)
    reported = [(await flood.line())["sent"] for _ in range(200)]
    os.kill(flood.process.pid, signal.SIGKILL)
    await flood.wait()
    assert flood.process.stdout is not None
    reported += [json.loads(line)["sent"] for line in flood.process.stdout]

    received = []
    while True:
        try:
            async with asyncio.timeout(1.0):
                received.append((await layer.receive("jobs"))["n"])
        except TimeoutError:
            break

    # Every send reported done arrived, once, in order; at most the one in
    # flight when the process died arrived unreported.
    assert received == list(range(len(received)))
    assert len(reported) <= len(received) <= len(reported) + 1


class Recorder:
    """A stream listener that queues what it is told."""

    def __init__(self) -> None:
        self.publications: asyncio.Queue[Publication] = asyncio.Queue()

    def publication(self, publication: Publication) -> None:
        self.publications.put_nowait(publication)

    def resync(self, stream: str) -> None:
        pass

    async def next(self) -> Publication:
        async with asyncio.timeout(TIMEOUT):
            return await self.publications.get()


async def test_a_stream_resumes_after_its_publisher_restarts(
    path: str, peers: list[Peer]
) -> None:
    first = Peer("publish", path, "chat.room", "3")
    peers.append(first)
    positions = [await first.line() for _ in range(3)]
    assert await first.wait() == 0
    epoch = positions[0]["epoch"]
    store = SQLiteHistoryStore(path)
    recorder = Recorder()
    try:
        await store.listen("chat.room", recorder)

        # The client saw offset 1 before the restart: it gets 2 and 3.
        history = await store.read("chat.room", Position(epoch, 1))
        assert history.recovered
        assert [(p.epoch, p.offset, p.data) for p in history.publications] == [
            (epoch, 2, '{"n": 1}'),
            (epoch, 3, '{"n": 2}'),
        ]

        # A publisher started again continues the same epoch, and its
        # publication is announced in this process.
        second = Peer("publish", path, "chat.room", "1")
        peers.append(second)
        assert await second.line() == {"epoch": epoch, "offset": 4}
        announced = await recorder.next()
        assert (announced.epoch, announced.offset) == (epoch, 4)
    finally:
        await store.close()


async def test_a_killed_process_loses_its_group_memberships_on_the_next_send(
    layer: SQLiteChannelLayer,
    path: str,
    peers: list[Peer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = Peer("receive", path, "room", "1")
    peers.append(member)
    await member.line()
    os.kill(member.process.pid, signal.SIGKILL)
    await member.wait()
    local = await layer.new_channel()
    await layer.group_add("room", local)

    await layer.group_send("room", {"type": "first"})  # finds the peer dead
    sent = layer.stats.sent
    await layer.group_send("room", {"type": "second"})

    assert layer.stats.sent - sent == 1
    assert [(await receive(layer, local))["type"] for _ in range(2)] == [
        "first",
        "second",
    ]
    assert any("ended without closing" in r.getMessage() for r in caplog.records)


async def test_a_publication_committed_by_a_process_killed_after_commit_arrives(
    path: str, peers: list[Peer]
) -> None:
    store = SQLiteHistoryStore(path, poll_interval=0.2)
    recorder = Recorder()
    try:
        await store.listen("orders.1", recorder)
        before = await store.read("orders.1")

        publisher = Peer("atomic", path, "orders.1", "die-after-commit")
        peers.append(publisher)
        written = await publisher.line()
        assert await publisher.wait() == -signal.SIGKILL

        announced = await recorder.next()
        assert (announced.epoch, announced.offset, announced.data) == (
            before.epoch,
            written["written"],
            '"saved"',
        )
        history = await store.read("orders.1", before.position)
        assert [p.offset for p in history.publications] == [1]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await recorder.publications.get()
    finally:
        await store.close()


async def test_a_rolled_back_transaction_publishes_nothing(
    path: str, peers: list[Peer]
) -> None:
    store = SQLiteHistoryStore(path, poll_interval=0.2)
    recorder = Recorder()
    try:
        await store.listen("orders.2", recorder)
        before = await store.read("orders.2")

        publisher = Peer("atomic", path, "orders.2", "rollback")
        peers.append(publisher)
        assert (await publisher.line())["written"] == 1
        assert await publisher.line() == {"rolled_back": True}
        assert await publisher.wait() == 0

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await recorder.publications.get()
        assert (await store.read("orders.2")).position == before.position
    finally:
        await store.close()


async def test_a_committed_publication_is_announced_at_once(
    path: str, peers: list[Peer]
) -> None:
    store = SQLiteHistoryStore(path, poll_interval=60)
    recorder = Recorder()
    try:
        await store.listen("orders.3", recorder)

        publisher = Peer("atomic", path, "orders.3", "commit")
        peers.append(publisher)
        written = await publisher.line()
        assert await publisher.line() == {"committed": True}

        announced = await recorder.next()
        assert (announced.offset, announced.data) == (written["written"], '"saved"')
    finally:
        await store.close()


async def test_a_process_forked_after_using_the_layer_can_send(
    layer: SQLiteChannelLayer, path: str, peers: list[Peer]
) -> None:
    channel = await layer.new_channel()

    forking = Peer("fork", path, channel, "5")
    peers.append(forking)

    assert await forking.line() == {"child": 0}
    received = [(await receive(layer, channel))["from"] for _ in range(2)]
    assert received == ["parent", "child"]
