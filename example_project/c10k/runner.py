"""Run the ``testecho`` clients: the asyncio shell around plan and report.

Clients start evenly over the ramp. Each opens a connection, sends its
echoes at times spread until the end of the hold and checks each reply,
then stays connected until the end of the hold and closes with code 1000.
A client stops at its first failure, which is counted and handed to
``on_failure`` at once. While idle a client waits on its connection, so a
connection the server closes or resets is noticed when it happens.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from example_project.c10k.client import (
    LoadConnection,
    SourceAddresses,
    connect,
)
from example_project.c10k.plan import (
    due_clients,
    message_times,
    origin_for,
    payload,
)
from example_project.c10k.report import (
    Failure,
    LoadStats,
    UnexpectedMessage,
    WrongEcho,
    failure_of,
)

__all__ = ["LoadConfig", "run"]

Clock = Callable[[], float]

# The ramp loop starts the clients that are due, then sleeps at least this
# long: a few clients per wake-up instead of one timer per client.
_RAMP_TICK = 0.005


@dataclass(frozen=True)
class LoadConfig:
    """What one ``testecho`` run does; see the command's options."""

    url: str
    clients: int
    ramp: float
    hold: float
    messages: int
    size: int
    timeout: float
    source_addresses: int = 1
    interval: float = 1.0


async def run(
    config: LoadConfig,
    stats: LoadStats,
    *,
    on_failure: Callable[[Failure], object],
    on_progress: Callable[[float], object],
    clock: Clock = time.monotonic,
) -> None:
    """Run ``config``'s clients to the end, counting what happens in ``stats``.

    ``on_progress(now)`` is called every ``config.interval`` seconds and
    once at the end; ``on_failure(failure)`` for each client that fails.
    The run lasts about ``ramp + hold`` seconds, plus the closing
    handshakes; every wait is bounded by ``config.timeout``.
    """
    start = stats.start
    end = start + config.ramp + config.hold
    origin = origin_for(config.url)
    sources = (
        SourceAddresses(per_host=math.ceil(config.clients / config.source_addresses))
        if config.source_addresses > 1
        else None
    )

    def fail(failure: Failure) -> None:
        stats.fail(failure)
        on_failure(failure)

    async def client(number: int) -> None:
        local_addr = sources.next() if sources is not None else None
        stats.attempt()
        began = clock()
        try:
            connection = await connect(
                config.url,
                origin=origin,
                local_addr=local_addr,
                timeout=config.timeout,
            )
        except Exception as exc:
            fail(failure_of(number, "connect", exc))
            return
        connected = clock()
        stats.handshake(connected, connected - began)
        phase = "hold"
        try:
            for count, due in enumerate(message_times(connected, end, config.messages)):
                phase = "hold"
                await _idle_until(connection, due, clock)
                phase = "echo"
                text = payload(number, count, config.size)
                async with asyncio.timeout(config.timeout):
                    stats.echo(await _echo(connection, text, clock))
            phase = "hold"
            await _idle_until(connection, end, clock)
            phase = "close"
            await connection.close(timeout=config.timeout)
            if connection.close_code == 1006:
                raise TimeoutError(
                    "The server did not answer the close frame within "
                    f"{config.timeout} s."
                )
        except Exception as exc:
            connection.abort()
            stats.disconnect()
            fail(failure_of(number, phase, exc))
            return
        stats.disconnect()
        stats.finish()

    ticker = asyncio.create_task(_tick(on_progress, config.interval, clock))
    clients: set[asyncio.Task[None]] = set()
    try:
        started = 0
        while started < config.clients:
            due = due_clients(clock() - start, config.clients, config.ramp)
            for number in range(started, due):
                clients.add(asyncio.create_task(client(number)))
            started = max(started, due)
            if started < config.clients:
                next_start = start + started * config.ramp / config.clients
                await asyncio.sleep(max(next_start - clock(), _RAMP_TICK))
        await asyncio.gather(*clients)
    finally:
        for task in clients:
            task.cancel()
        ticker.cancel()
    on_progress(clock())


async def _echo(connection: LoadConnection, text: str, clock: Clock) -> float:
    """Send ``text``, wait for the same text back, and return the round trip.

    Raises:
        WrongEcho: Something else came back.
    """
    sent = clock()
    await connection.send_text(text)
    reply = await connection.recv()
    if reply != text:
        raise WrongEcho(text, reply)
    return clock() - sent


async def _idle_until(connection: LoadConnection, when: float, clock: Clock) -> None:
    """Wait until ``when`` on the clock, watching ``connection``.

    Raises:
        UnexpectedMessage: The server sent something meanwhile.
        ConnectionClosed: The server closed the connection meanwhile.
    """
    remaining = when - clock()
    if remaining <= 0:
        return
    try:
        async with asyncio.timeout(remaining):
            received = await connection.recv()
    except TimeoutError:
        return
    raise UnexpectedMessage(received)


async def _tick(
    on_progress: Callable[[float], object], every: float, clock: Clock
) -> None:
    while True:
        await asyncio.sleep(every)
        on_progress(clock())
