"""The suite's group measurements: fan-out to a group, and joins at once.

Members of the fan-out are connections of load workers
(:mod:`benchmarks.workers`); the joins open their connections all at once
on the asyncio client of :mod:`example_project.c10k.client`. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import workers
from benchmarks.measures import HANDSHAKE_TIMEOUT, failure_name
from benchmarks.servers import Server
from example_project.c10k.client import LoadConnection, SourceAddresses, connect

# -- d. group fan-out -------------------------------------------------------


@dataclass
class FanoutResult:
    members: int
    messages: int
    expected: int
    delivered: int
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    server_cpu: float
    client_cpu: float

    @property
    def lost(self) -> int:
        return self.expected - self.delivered


def percentile(sorted_values: list[int], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return float(sorted_values[index])


def _message(phase: str, seq: int, size: int) -> str:
    """Return ``<phase><seq:7> <monotonic_ns:20> `` padded to ``size``."""
    return f"{phase}{seq:07d} {time.monotonic_ns():020d} ".ljust(size, "x")


async def _phase_answers(
    started: list[workers.Worker], phase: str, drain_timeout: float
) -> list[dict[str, Any]]:
    """Return each worker's answer for ``phase``, flushed at the drain timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain_timeout
    answers = []
    for worker in started:
        try:
            answers.append(await worker.answer(max(0.001, deadline - loop.time())))
        except TimeoutError:
            await worker.send({"flush": phase})
            answers.append(await worker.answer(30.0))
    return answers


async def publish_phase(
    server: Server,
    started: list[workers.Worker],
    publisher: LoadConnection,
    phase: str,
    count: int,
    *,
    pace: float | None,
    size: int,
    drain_timeout: float,
) -> FanoutResult:
    """Publish ``count`` messages (``pace`` a second, or at once); measure receipt.

    Each member's latency is from the publish to its receipt, the client's
    hops included; what has not arrived ``drain_timeout`` seconds after the
    last publish is lost.
    """
    joined = sum(worker.opened for worker in started)
    for worker in started:
        await worker.send({"expect": [phase, count]})
    server_before = server.cpu_seconds()
    first_ns = time.monotonic_ns()
    start = time.monotonic()
    for seq in range(count):
        await publisher.send_text(_message(phase, seq, size))
        if pace is not None:
            await asyncio.sleep(max(0.0, start + (seq + 1) / pace - time.monotonic()))
    answers = await _phase_answers(started, phase, drain_timeout)
    server_seconds = server.cpu_seconds() - server_before
    latencies = sorted(ns for answer in answers for ns in answer["latencies"])
    last_ns = max((a["last_ns"] for a in answers if a["last_ns"]), default=first_ns)
    elapsed = (last_ns - first_ns) / 1e9
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return FanoutResult(
        members=joined,
        messages=count,
        expected=joined * count,
        delivered=len(latencies),
        rate=len(latencies) / elapsed if elapsed > 0 else 0.0,
        p50_ms=None if p50 is None else p50 / 1e6,
        p99_ms=None if p99 is None else p99 / 1e6,
        server_cpu=server_seconds / elapsed if elapsed > 0 else 0.0,
        client_cpu=sum(a["cpu"] for a in answers) / elapsed if elapsed > 0 else 0.0,
    )


@dataclass
class FanoutRun:
    paced: FanoutResult
    burst: FanoutResult
    join_failures: collections.Counter[str]
    ready: bool


async def fanout(
    server: Server,
    *,
    members: int,
    paced_rate: float,
    paced_seconds: float,
    burst: int,
    size: int,
    drain_timeout: float,
    processes: int,
    cpus: set[int] | None,
    sources: SourceAddresses,
) -> FanoutRun:
    """Measure a group of ``members``: paced publishing, then a burst.

    The members are connections of load workers; a publisher connection
    sends stamped messages, which its consumer sends to the group. Everyone
    is in the group once one message has reached everyone.
    """
    async with workers.running(
        "members",
        server.url("/ws/fanout/"),
        members,
        size=size,
        processes=processes,
        cpus=cpus,
    ) as (started, failures):
        publisher = await connect(server.url("/ws/publish/"), local_addr=sources.next())
        try:
            phase = functools.partial(
                publish_phase,
                server,
                started,
                publisher,
                size=size,
                drain_timeout=drain_timeout,
            )
            warm = await phase("w", 1, pace=None)
            count = max(1, round(paced_rate * paced_seconds))
            paced = await phase("p", count, pace=paced_rate)
            burst_result = await phase("b", burst, pace=None)
            server.check_alive()
        finally:
            publisher.abort()
    return FanoutRun(paced, burst_result, failures, warm.lost == 0)


# -- e. joins at once -------------------------------------------------------


@dataclass
class JoinResult:
    clients: int
    joined: int
    not_reached: int
    failures: collections.Counter[str]

    @property
    def failed(self) -> int:
        return self.clients - self.joined


async def joins(
    server: Server,
    *,
    clients: int,
    size: int,
    drain_timeout: float,
    sources: SourceAddresses,
) -> JoinResult:
    """Open ``clients`` group members all at once; count refused handshakes.

    Then one message is sent to the group: members that do not receive it
    within ``drain_timeout`` were accepted but are not in the group.
    """
    url = server.url("/ws/fanout/")
    outcomes = await asyncio.gather(
        *(
            connect(url, local_addr=sources.next(), timeout=HANDSHAKE_TIMEOUT)
            for _ in range(clients)
        ),
        return_exceptions=True,
    )
    connections = [item for item in outcomes if isinstance(item, LoadConnection)]
    failures: collections.Counter[str] = collections.Counter(
        failure_name(item) for item in outcomes if isinstance(item, BaseException)
    )
    reached = 0
    everyone = asyncio.Event()

    def arrived(data: str | bytes, now_ns: int) -> None:
        nonlocal reached
        reached += 1
        if reached == len(connections):
            everyone.set()

    for connection in connections:
        connection.on_message = arrived
    publisher = None
    try:
        publisher = await connect(server.url("/ws/publish/"), local_addr=sources.next())
        await publisher.send_text(_message("j", 0, size))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await everyone.wait()
    finally:
        if publisher is not None:
            publisher.abort()
        for connection in connections:
            connection.abort()
    return JoinResult(clients, len(connections), len(connections) - reached, failures)
