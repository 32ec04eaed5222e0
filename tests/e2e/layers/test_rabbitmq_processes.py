"""The RabbitMQ layer between real processes.

Each test starts :mod:`tests.e2e.layers.rabbitmq_peer` with ``subprocess``
on the same broker and prefix, as ``runserver``, ``runworker`` and
``manage.py shell`` would share one ``CHANNEL_LAYERS`` setting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from django_realtime.layers.rabbitmq import RabbitMQChannelLayer
from django_realtime.layers.rabbitmq._names import owner_of
from tests.e2e.layers.peers import PeerProcess
from tests.integration.layers.conftest import rabbitmq_config

# The broker is shared: under pytest-xdist these tests run on one worker.
pytestmark = pytest.mark.xdist_group("rabbitmq")

TIMEOUT = 10.0


class Peer(PeerProcess):
    """A process of tests.e2e.layers.rabbitmq_peer."""

    def __init__(self, role: str, prefix: str, target: str, count: int) -> None:
        module = "tests.e2e.layers.rabbitmq_peer"
        super().__init__(module, role, prefix, target, str(count), timeout=TIMEOUT)


@pytest.fixture
def prefix() -> str:
    prefix = f"drt{uuid.uuid4().hex[:8]}."
    rabbitmq_config(prefix)  # skip (or fail, under CI) if the broker is down
    return prefix


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for peer in started:
        peer.stop()


@pytest.fixture
async def layer(prefix: str) -> AsyncIterator[RabbitMQChannelLayer]:
    layer = RabbitMQChannelLayer(**rabbitmq_config(prefix), capacity=100_000)
    yield layer
    await layer.close()


async def receive(layer: RabbitMQChannelLayer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await layer.receive(channel)


async def test_a_message_sent_here_is_received_by_the_other_process(
    layer: RabbitMQChannelLayer, prefix: str, peers: list[Peer]
) -> None:
    peer = Peer("receive", prefix, "room", 1)
    peers.append(peer)
    channel = (await peer.line())["channel"]

    await layer.send(channel, {"type": "hello", "text": "from the test"})

    assert (await peer.line())["message"] == {
        "type": "hello",
        "text": "from the test",
    }
    assert await peer.wait() == 0


async def test_a_worker_process_reads_a_normal_channel_sent_to_before_it_started(
    layer: RabbitMQChannelLayer, prefix: str, peers: list[Peer]
) -> None:
    for n in range(5):
        await layer.send("jobs", {"type": "job", "n": n})

    worker = Peer("work", prefix, "jobs", 5)
    peers.append(worker)

    assert [(await worker.line())["message"]["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert await worker.wait() == 0


async def test_group_sends_from_a_sync_shell_reach_members_in_both_processes(
    layer: RabbitMQChannelLayer, prefix: str, peers: list[Peer]
) -> None:
    member = Peer("receive", prefix, "room", 3)
    peers.append(member)
    remote = (await member.line())["channel"]
    local = await layer.new_channel()
    await layer.group_add("room", local)

    shell = Peer("send-sync", prefix, "room", 20)
    peers.append(shell)
    leaks = await shell.line()

    assert [(await member.line())["message"]["n"] for _ in range(3)] == [0, 1, 2]
    assert [(await receive(layer, local))["n"] for _ in range(20)] == list(range(20))
    assert remote != local
    # async_to_sync makes a loop per call; the layer keeps one thread and
    # one connection to the broker.
    assert leaks["threads"][1] == leaks["threads"][0]
    assert leaks["fds"][1] == leaks["fds"][0]
    assert await shell.wait() == 0


async def test_a_process_forked_after_using_the_layer_sends_as_itself(
    layer: RabbitMQChannelLayer, prefix: str, peers: list[Peer]
) -> None:
    channel = await layer.new_channel()
    parent = Peer("fork", prefix, channel, 5)
    peers.append(parent)

    assert await parent.line() == {"child": 0}
    received = {}
    for _ in range(2):
        message = await receive(layer, channel)
        received[message["from"]] = message["own"]
    assert sorted(received) == ["child", "parent"]
    # The child took a process id of its own: its channels are its own.
    assert owner_of(received["child"]) != owner_of(received["parent"])
