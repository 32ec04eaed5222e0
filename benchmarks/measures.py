"""The suite's measurements, from the client side.

Every function drives one running server and returns plain figures,
among them the client's CPU share over the measured window (1.0 is one
core busy): a client near its core's limit measures itself, not the
server. Echo and fan-out, where the client handles as many messages as
the server, run on load workers (:mod:`benchmarks.workers`); handshakes
run on the asyncio client of :mod:`example_project.c10k.client`, in this
process. Times come from ``time.monotonic()`` / ``time.monotonic_ns()``;
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import resource
import time
from dataclasses import dataclass, field

from benchmarks import workers
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


def failure_name(error: BaseException) -> str:
    """Return a failed connection's cause in a few words (``HTTP 503``, ``timeout``)."""
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
    until: float | None = None,
) -> Opened:
    """Open ``count`` connections, ``concurrency`` handshakes in flight.

    Failed handshakes are counted, not retried; after ``max_failures``, or
    once ``time.monotonic()`` passes ``until``, no more are started.
    Connections are appended to ``into`` if given.
    """
    opened = into if into is not None else Opened()
    remaining = count
    deadline = until if until is not None else float("inf")

    async def opener() -> None:
        nonlocal remaining
        while (
            remaining > 0
            and sum(opened.failures.values()) < max_failures
            and time.monotonic() < deadline
        ):
            remaining -= 1
            try:
                connection = await connect(
                    url,
                    headers=headers,
                    local_addr=sources.next(),
                    timeout=HANDSHAKE_TIMEOUT,
                )
            except (HandshakeError, OSError, TimeoutError) as error:
                opened.failures[failure_name(error)] += 1
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
    processes: int,
    cpus: set[int] | None,
) -> EchoResult:
    """Return round trips per second: each connection sends, awaits the reply.

    The connections are spread over ``processes`` load workers; the
    client's CPU is theirs, added up.
    """
    async with workers.running(
        "echo",
        server.url(path),
        connections,
        size=size,
        processes=processes,
        cpus=cpus,
    ) as (started, failures):
        if not any(worker.opened for worker in started):
            raise RuntimeError(f"No echo connection opened: {dict(failures)}")
        measure_from = time.monotonic_ns() + int(warmup * 1e9)
        measure_to = measure_from + int(duration * 1e9)
        for worker in started:
            await worker.send({"go": [measure_from, measure_to]})
        await asyncio.sleep((measure_from - time.monotonic_ns()) / 1e9)
        server_before = server.cpu_seconds()
        await asyncio.sleep((measure_to - time.monotonic_ns()) / 1e9)
        server_cpu = (server.cpu_seconds() - server_before) / duration
        answers = [await worker.answer(30.0) for worker in started]
    for answer in answers:
        failures.update(answer["errors"])
    return EchoResult(
        rate=sum(answer["count"] for answer in answers) / duration,
        server_cpu=server_cpu,
        client_cpu=sum(answer["cpu"] for answer in answers) / duration,
        failures=failures,
    )


# -- b. held connections ----------------------------------------------------


@dataclass
class RampResult:
    held: int
    rates: dict[int, float]
    ramp_rate: float
    ramp_server_cpu: float
    ramp_client_cpu: float
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
    seconds: float,
) -> RampResult:
    """Ramp to ``max(targets)`` held connections; rates at each target, RSS.

    The server's VmRSS is read before the ramp (after one warm-up connection)
    and once ``rss_at`` connections are held and the server has settled.
    No handshake starts after ``seconds`` of ramping: a server slower than
    that is reported at the count it reached.
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
    client_start = _client_cpu()
    until = start + seconds
    try:
        await open_many(
            url,
            rss_at,
            concurrency=concurrency,
            sources=sources,
            into=opened,
            until=until,
        )
        ramp_elapsed = (opened.times[-1] - start) if opened.times else 0.0
        ramp_cpu = server.cpu_seconds() - cpu_start
        ramp_client = _client_cpu() - client_start
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
                until=until + settle,
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
            ramp_client_cpu=ramp_client / ramp_elapsed if ramp_elapsed else 0.0,
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
    client_cpu: float
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
                failures[failure_name(error)] += 1
                continue
            try:
                name = await asyncio.wait_for(connection.recv(), HANDSHAKE_TIMEOUT)
            finally:
                connection.abort()
            if name != username:
                failures[f"answered {name!r}"] += 1
            elif measure_from <= time.monotonic() < measure_to:
                counted += 1

    async def sample() -> tuple[float, float]:
        await asyncio.sleep(measure_from - time.monotonic())
        before, client_before = server.cpu_seconds(), _client_cpu()
        await asyncio.sleep(measure_to - time.monotonic())
        return (
            (server.cpu_seconds() - before) / duration,
            (_client_cpu() - client_before) / duration,
        )

    sampling = asyncio.ensure_future(sample())
    try:
        async with asyncio.timeout(warmup + duration + HANDSHAKE_TIMEOUT + 10):
            await asyncio.gather(*(client() for _ in range(concurrency)))
            cpu = await sampling
    finally:
        sampling.cancel()
    return ConnectResult(counted / duration, cpu[0], cpu[1], failures)
