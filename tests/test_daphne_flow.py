"""A client that stops reading, on a real daphne: the server holds a bounded amount.

daphne's own ``send`` never waits, so without ``flow_controlled`` the
server keeps everything a stalled client cannot take. Short runs of
``benchmarks.slow_client`` on daphne: 50 clients read a broadcast of
16 KiB messages, 20 a second for 4 s, while one client (small receive
buffer, Ethernet MSS) stops reading once subscribed and reads again at the
end. The stream queue and the layer's channel capacity are 20 messages, so
a server that kept everything (80 messages, 1.3 MB) fails the bounds.

First the gate itself, with no server.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from benchmarks import slow_client
from benchmarks._servers import Server
from benchmarks._slow_client_clients import Broadcast, SlowClient, abort, tcp_sockets
from benchmarks._slow_client_report import WRITE_BUFFERS, CaseResult, allowance
from django_realtime._daphne import _FlowGate, flow_controlled

OPTIONS = slow_client.Options(
    readers=50,
    slow=(1,),
    duration=4.0,
    rate=20.0,
    servers=("daphne",),
    max_queued=20,
    capacity=20,
    # Long enough that a catch-up finds everything still there.
    history=1000,
    pin=False,
)

Test = TypeVar("Test", bound=Callable[..., Any])


def e2e(test: Test) -> Test:
    """Mark ``test`` as a run on a real daphne process and Redis."""
    for mark in (pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(90)):
        test = mark(test)
    return test


async def _asgi_send(message: Any) -> None:
    pass


def test_a_send_that_is_not_daphnes_is_returned_unchanged() -> None:
    partial = functools.partial(_asgi_send)

    assert flow_controlled(_asgi_send) is _asgi_send
    assert flow_controlled(partial) is partial


async def test_the_gate_holds_sends_while_paused_and_lets_them_go_on_resume() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    gate = _FlowGate(send)
    await gate.send({"type": "websocket.send", "text": "1"})
    gate.pauseProducing()
    waiting = [
        asyncio.create_task(gate.send({"type": "websocket.send", "text": "2"})),
        asyncio.create_task(gate.send({"type": "websocket.close", "code": 4008})),
    ]
    await asyncio.sleep(0)  # let both reach the gate

    assert [message.get("text") for message in sent] == ["1"]
    gate.resumeProducing()
    async with asyncio.timeout(5):
        await asyncio.gather(*waiting)
    assert [message["type"] for message in sent] == [
        "websocket.send",
        "websocket.send",
        "websocket.close",
    ]


async def test_a_lost_connection_wakes_the_sends_waiting_at_the_gate() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    gate = _FlowGate(send)
    gate.pauseProducing()
    waiting = asyncio.create_task(gate.send({"type": "websocket.send", "text": "x"}))
    cancelled = asyncio.create_task(gate.send({"type": "websocket.send", "text": "y"}))
    await asyncio.sleep(0)
    cancelled.cancel()  # one waiter cancelled leaves the others waiting

    gate.stopProducing()
    async with asyncio.timeout(5):
        await waiting
    assert [message["text"] for message in sent] == ["x"]
    assert cancelled.cancelled()


def _assert_readers_unaffected(result: CaseResult) -> None:
    assert result.incomplete_readers == 0, (result.delivered, result.expected)
    assert result.p99 is not None
    # Generous: other tests share the machine. A broadcast held up by the
    # slow client would add its whole stall, seconds, to every reader.
    assert result.p99 < 1.0, result.p99


@e2e
async def test_a_client_that_stops_reading_is_closed_with_4008_on_daphne(
    tmp_path: Path,
) -> None:
    result = await slow_client.run_case(
        "daphne", "stream", "close", 1, OPTIONS, tmp_path
    )

    _assert_readers_unaffected(result)
    assert result.log.closes == 1
    assert result.log.errors == 0
    (outcome,) = result.slow_clients
    assert outcome.close_code == 4008
    # What it got before the close came from the write buffers, not a queue.
    assert outcome.held_bytes <= WRITE_BUFFERS


@e2e
async def test_a_client_that_stops_reading_is_caught_up_from_history_on_daphne(
    tmp_path: Path,
) -> None:
    result = await slow_client.run_case(
        "daphne", "stream", "catch_up", 1, OPTIONS, tmp_path
    )

    _assert_readers_unaffected(result)
    # The queue filled: the sends waited for the client.
    assert result.log.catch_ups >= 1
    assert result.log.errors == 0
    (outcome,) = result.slow_clients
    assert outcome.close_code is None
    assert outcome.caught_up
    # Every publication once and in order, the dropped ones from history.
    assert (outcome.gaps, outcome.duplicates, outcome.lost_frames) == (0, 0, 0)


@e2e
async def test_a_group_member_that_stops_reading_is_skipped_at_capacity_on_daphne(
    tmp_path: Path,
) -> None:
    result = await slow_client.run_case("daphne", "group", None, 1, OPTIONS, tmp_path)

    _assert_readers_unaffected(result)
    # group_send skipped the full member, with a warning and a count.
    assert result.log.layer_dropped > 0
    assert result.log.errors == 0
    (outcome,) = result.slow_clients
    per_client = allowance(
        "group",
        result.frame_bytes,
        OPTIONS.max_queued,
        OPTIONS.max_queued_bytes,
        OPTIONS.capacity,
    )
    assert outcome.held_bytes <= per_client.held
    # Read again, it got what its channel and the buffers held, then nothing:
    # the rest was dropped for it.
    assert outcome.after_frames < OPTIONS.count
    assert not outcome.caught_up


async def _subscribers(redis: Any, topic: str) -> int:
    ((_, count),) = await redis.pubsub_numsub(topic)
    return int(count)


async def _no_subscribers_within(seconds: float, redis: Any, topic: str) -> bool:
    """Return whether ``topic`` loses its subscribers within ``seconds``."""
    for _ in range(round(seconds * 10)):
        if not await _subscribers(redis, topic):
            return True
        await asyncio.sleep(0.1)  # Redis cannot tell us; ask again
    return False


async def _until_the_server_stops_writing(server_port: int, client_port: int) -> None:
    """Return once the bytes the kernel queues for the client stop growing."""
    last, steady = -1, 0
    while steady < 5:
        _, queued, _ = tcp_sockets().get((server_port, client_port), ("gone", 0, 0))
        steady = steady + 1 if queued == last and queued > 0 else 0
        last = queued
        await asyncio.sleep(0.1)  # the kernel's queue cannot be awaited


@e2e
async def test_a_client_that_disconnects_while_its_send_waits_leaves_no_stuck_consumer(
    tmp_path: Path,
) -> None:
    from redis.asyncio import Redis

    from django_realtime.layers.redis import RedisChannelLayer

    prefix = f"bdf{time.monotonic_ns() % 10**10}"
    env = {
        "DJANGO_SETTINGS_MODULE": slow_client.SETTINGS,
        "BENCH_SLOW_REDIS": OPTIONS.redis_url,
        "BENCH_SLOW_PREFIX": prefix,
        # Room for everything: the member's handler waits in send, it is
        # never skipped.
        "BENCH_SLOW_CAPACITY": "1000",
    }
    server = await asyncio.to_thread(
        Server, "daphne", slow_client.APP, env, None, tmp_path / "daphne.log"
    )
    layer = RedisChannelLayer([OPTIONS.redis_url], prefix=f"{prefix}-layer")
    redis = Redis.from_url(OPTIONS.redis_url)
    topic = layer._names.group_topic(slow_client.GROUP)
    client = SlowClient(Broadcast("group", 1, 0))
    try:
        await client.open(server.url("/ws/group/"), server.port, 4096, 1448)
        assert await _subscribers(redis, topic) == 1
        pad = "x" * 16384
        for n in range(60):  # 1 MB: far over the write buffer and the kernel's
            await layer.group_send(
                slow_client.GROUP,
                {"type": "bench.message", "data": {"n": n, "pad": pad}},
            )
        # Then the member's handler waits in send, with the rest queued.
        async with asyncio.timeout(10):
            await _until_the_server_stops_writing(server.port, client.port)

        abort(client.ws)

        # The waiting send wakes, the consumer ends and leaves its group.
        assert await _no_subscribers_within(5.0, redis, topic)
        server.check_alive()
    finally:
        abort(client.ws)
        server.kill()
        await layer.flush()
        await layer.close()
        await redis.aclose()
    assert "took too long to shut down" not in server.output
    assert "Traceback" not in server.output, server.output[-3000:]
