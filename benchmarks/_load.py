"""The suite's measurements, from the client side, on the load client.

Every function drives one running server through
:mod:`example_project.c10k.client` and returns plain figures. Times
come from ``time.monotonic()`` / ``time.monotonic_ns()``; every wait is
bounded.
"""

# drain_timeout and duration are figures of the measurement, not call timeouts.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import errno
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from benchmarks.servers import Server
from example_project.c10k.client import (
    HandshakeError,
    LoadConnection,
    SourceAddresses,
    connect,
)

HANDSHAKE_TIMEOUT = 30.0


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _failure_name(error: BaseException) -> str:
    if isinstance(error, HandshakeError):
        return f"HTTP {error.status}"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError) and error.errno:
        return errno.errorcode.get(error.errno, str(error.errno))
    return type(error).__name__


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Opened:
    """Connections opened by :func:`open_many`, with when each handshake ended."""

    connections: list[LoadConnection] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)

    def abort(self) -> None:
        for connection in self.connections:
            connection.abort()


async def open_many(
    url: str,
    count: int,
    *,
    concurrency: int,
    sources: SourceAddresses,
    headers: dict[str, str] | None = None,
    into: Opened | None = None,
    max_failures: int = 100,
) -> Opened:
    """Open ``count`` connections, ``concurrency`` handshakes in flight.

    Failed handshakes are counted, not retried; after ``max_failures`` the
    ramp stops. Connections are appended to ``into`` if given.
    """
    opened = into if into is not None else Opened()
    remaining = count

    async def opener() -> None:
        nonlocal remaining
        while remaining > 0 and sum(opened.failures.values()) < max_failures:
            remaining -= 1
            try:
                connection = await connect(
                    url,
                    headers=headers,
                    local_addr=sources.next(),
                    timeout=HANDSHAKE_TIMEOUT,
                )
            except (HandshakeError, OSError, TimeoutError) as error:
                opened.failures[_failure_name(error)] += 1
            else:
                opened.connections.append(connection)
                opened.times.append(time.monotonic())

    await asyncio.gather(*(opener() for _ in range(min(concurrency, count))))
    return opened


# -- a. echo ----------------------------------------------------------------


@dataclass
class EchoResult:
    rate: float
    server_cpu: float
    client_cpu: float
    failures: collections.Counter[str]


async def echo(
    server: Server,
    path: str,
    *,
    connections: int,
    size: int,
    duration: float,
    warmup: float,
    sources: SourceAddresses,
) -> EchoResult:
    """Return round trips per second: each connection sends, awaits the reply."""
    opened = await open_many(
        server.url(path), connections, concurrency=connections, sources=sources
    )
    if not opened.connections:
        raise RuntimeError(f"No echo connection opened: {dict(opened.failures)}")
    payload = "x" * size
    counted = 0
    start = time.monotonic()
    measure_from = start + warmup
    measure_to = measure_from + duration

    async def talk(connection: LoadConnection) -> None:
        nonlocal counted
        send, recv, clock = connection.send_text, connection.recv, time.monotonic
        while True:
            await send(payload)
            await recv()
            now = clock()
            if now >= measure_to:
                return
            if now >= measure_from:
                counted += 1

    async def sample() -> tuple[float, float]:
        await asyncio.sleep(measure_from - time.monotonic())
        server_before, client_before = server.cpu_seconds(), _client_cpu()
        await asyncio.sleep(measure_to - time.monotonic())
        return (
            (server.cpu_seconds() - server_before) / duration,
            (_client_cpu() - client_before) / duration,
        )

    sampling = asyncio.ensure_future(sample())
    try:
        async with asyncio.timeout(warmup + duration + 30):
            await asyncio.gather(
                *(talk(connection) for connection in opened.connections)
            )
            cpu = await sampling
    finally:
        sampling.cancel()
        opened.abort()
    return EchoResult(counted / duration, cpu[0], cpu[1], opened.failures)


# -- b. held connections ----------------------------------------------------


@dataclass
class RampResult:
    held: int
    rates: dict[int, float]
    ramp_rate: float
    ramp_server_cpu: float
    rss_at: int
    rss_per_connection_kib: float
    failures: collections.Counter[str]


def window_rate(times: list[float], at: int) -> float | None:
    """Return handshakes per second over the ``at // 5`` (at most 1,000)
    handshakes that brought the count to ``at``, or ``None`` if it never got
    there.
    """
    window = min(1_000, max(1, at // 5))
    if len(times) < at or at <= window:
        return None
    elapsed = times[at - 1] - times[at - 1 - window]
    return window / elapsed if elapsed > 0 else None


async def ramp(
    server: Server,
    path: str,
    *,
    targets: list[int],
    rss_at: int,
    concurrency: int,
    settle: float,
    sources: SourceAddresses,
) -> RampResult:
    """Ramp to ``max(targets)`` held connections; rates at each target, RSS.

    The server's VmRSS is read before the ramp (after one warm-up connection)
    and once ``rss_at`` connections are held and the server has settled.
    """
    url = server.url(path)
    warm = await connect(url, local_addr=sources.next())
    await warm.send_text("warm-up")
    await warm.recv()
    await warm.close()
    await asyncio.sleep(settle)
    rss_before = server.rss_kib()
    opened = Opened()
    start, cpu_start = time.monotonic(), server.cpu_seconds()
    try:
        await open_many(
            url, rss_at, concurrency=concurrency, sources=sources, into=opened
        )
        ramp_elapsed = (opened.times[-1] - start) if opened.times else 0.0
        ramp_cpu = server.cpu_seconds() - cpu_start
        held_at_rss = len(opened.connections)
        await asyncio.sleep(settle)
        server.check_alive()
        rss_with = server.rss_kib()
        top = max(targets)
        if top > rss_at:
            await open_many(
                url,
                top - rss_at,
                concurrency=concurrency,
                sources=sources,
                into=opened,
            )
        server.check_alive()
        rates = {}
        for target in targets:
            rate = window_rate(opened.times, target)
            if rate is not None:
                rates[target] = rate
        return RampResult(
            held=len(opened.connections),
            rates=rates,
            ramp_rate=held_at_rss / ramp_elapsed if ramp_elapsed else 0.0,
            ramp_server_cpu=ramp_cpu / ramp_elapsed if ramp_elapsed else 0.0,
            rss_at=held_at_rss,
            rss_per_connection_kib=(rss_with - rss_before) / max(1, held_at_rss),
            failures=opened.failures,
        )
    finally:
        opened.abort()


# -- c. connect rate through session + auth ---------------------------------


@dataclass
class ConnectResult:
    rate: float
    server_cpu: float
    failures: collections.Counter[str]


async def connect_rate(
    server: Server,
    path: str,
    *,
    cookie: str,
    username: str,
    concurrency: int,
    duration: float,
    warmup: float,
    sources: SourceAddresses,
) -> ConnectResult:
    """Return handshakes per second that end with the user's name received.

    Each connection sends the session cookie; the consumer answers with
    ``scope["user"]``'s name; the client checks it and drops the connection.
    """
    url = server.url(path)
    headers = {"Cookie": cookie}
    failures: collections.Counter[str] = collections.Counter()
    counted = 0
    start = time.monotonic()
    measure_from, measure_to = start + warmup, start + warmup + duration

    async def client() -> None:
        nonlocal counted
        while time.monotonic() < measure_to and sum(failures.values()) < 100:
            try:
                connection = await connect(
                    url,
                    headers=headers,
                    local_addr=sources.next(),
                    timeout=HANDSHAKE_TIMEOUT,
                )
            except (HandshakeError, OSError, TimeoutError) as error:
                failures[_failure_name(error)] += 1
                continue
            try:
                name = await asyncio.wait_for(connection.recv(), HANDSHAKE_TIMEOUT)
            finally:
                connection.abort()
            if name != username:
                failures[f"answered {name!r}"] += 1
            elif measure_from <= time.monotonic() < measure_to:
                counted += 1

    async def sample() -> float:
        await asyncio.sleep(measure_from - time.monotonic())
        before = server.cpu_seconds()
        await asyncio.sleep(measure_to - time.monotonic())
        return (server.cpu_seconds() - before) / duration

    sampling = asyncio.ensure_future(sample())
    try:
        async with asyncio.timeout(warmup + duration + HANDSHAKE_TIMEOUT + 10):
            await asyncio.gather(*(client() for _ in range(concurrency)))
            cpu = await sampling
    finally:
        sampling.cancel()
    return ConnectResult(counted / duration, cpu, failures)


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

    @property
    def lost(self) -> int:
        return self.expected - self.delivered


def percentile(sorted_values: list[int], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return float(sorted_values[index])


class _Collector:
    """Record publish-to-receipt latencies, per phase, from message stamps.

    Messages are ``<phase><seq:7> <monotonic_ns:20> `` padded to their size;
    the phase is one letter.
    """

    def __init__(self) -> None:
        self.latencies: dict[str, list[int]] = collections.defaultdict(list)
        self.last: dict[str, int] = {}
        self.target: dict[str, int] = {}
        self.done: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)

    def __call__(self, data: str | bytes, now_ns: int) -> object:
        assert isinstance(data, str)
        phase = data[0]
        latencies = self.latencies[phase]
        latencies.append(now_ns - int(data[9:29]))
        self.last[phase] = now_ns
        if len(latencies) == self.target.get(phase):
            self.done[phase].set()
        return None


def _message(phase: str, seq: int, size: int) -> str:
    return f"{phase}{seq:07d} {time.monotonic_ns():020d} ".ljust(size, "x")


async def _drain(collector: _Collector, phase: str, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await collector.done[phase].wait()
    except TimeoutError:
        pass


def _result(
    collector: _Collector, phase: str, members: int, messages: int, first_ns: int
) -> FanoutResult:
    latencies = sorted(collector.latencies.get(phase, []))
    delivered = len(latencies)
    elapsed = (collector.last.get(phase, first_ns) - first_ns) / 1e9
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return FanoutResult(
        members=members,
        messages=messages,
        expected=members * messages,
        delivered=delivered,
        rate=delivered / elapsed if elapsed > 0 else 0.0,
        p50_ms=None if p50 is None else p50 / 1e6,
        p99_ms=None if p99 is None else p99 / 1e6,
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
    concurrency: int,
    sources: SourceAddresses,
) -> FanoutRun:
    """Measure a group of ``members``: paced publishing, then a burst.

    A publisher connection sends stamped messages; its consumer sends each
    to the group. Every member records ``receipt - stamp``. After each phase
    the members are given ``drain_timeout`` seconds to receive everything;
    what has not arrived by then is lost.
    """
    opened = await open_many(
        server.url("/ws/fanout/"), members, concurrency=concurrency, sources=sources
    )
    collector = _Collector()
    joined = len(opened.connections)
    for connection in opened.connections:
        connection.on_message = collector
    publisher = await connect(server.url("/ws/publish/"), local_addr=sources.next())
    try:
        # Everyone is in the group once one message has reached everyone.
        collector.target["w"] = joined
        await publisher.send_text(_message("w", 0, size))
        await _drain(collector, "w", drain_timeout)
        ready = len(collector.latencies["w"]) == joined

        count = max(1, round(paced_rate * paced_seconds))
        collector.target["p"] = joined * count
        first_ns = time.monotonic_ns()
        start = time.monotonic()
        for seq in range(count):
            await publisher.send_text(_message("p", seq, size))
            await asyncio.sleep(
                max(0.0, start + (seq + 1) / paced_rate - time.monotonic())
            )
        await _drain(collector, "p", drain_timeout)
        paced = _result(collector, "p", joined, count, first_ns)

        collector.target["b"] = joined * burst
        first_ns = time.monotonic_ns()
        for seq in range(burst):
            await publisher.send_text(_message("b", seq, size))
        await _drain(collector, "b", drain_timeout)
        burst_result = _result(collector, "b", joined, burst, first_ns)
        server.check_alive()
    finally:
        publisher.abort()
        opened.abort()
    return FanoutRun(paced, burst_result, opened.failures, ready)


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
        _failure_name(item) for item in outcomes if isinstance(item, BaseException)
    )
    collector = _Collector()
    collector.target["j"] = len(connections)
    for connection in connections:
        connection.on_message = collector
    publisher = None
    try:
        publisher = await connect(server.url("/ws/publish/"), local_addr=sources.next())
        await publisher.send_text(_message("j", 0, size))
        await _drain(collector, "j", drain_timeout)
    finally:
        if publisher is not None:
            publisher.abort()
        for connection in connections:
            connection.abort()
    reached = len(collector.latencies["j"])
    return JoinResult(clients, len(connections), len(connections) - reached, failures)


Measurement = Callable[[], Awaitable[object]]
