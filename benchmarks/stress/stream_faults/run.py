"""Break stream connections on purpose and count what clients lose or get twice.

Two server processes (one uvicorn and one daphne by default) serve
``benchmarks.stress.stream_faults.app``: a StreamConsumer whose history lives in Redis
under a prefix of this run's own. This process publishes to the run's
streams at a steady rate through :class:`RedisHistoryStore` (payload
``{"n": <the stream's sequence number>, "t": <time>}``), and runs the
clients, taking the transports in turn (``--transports``): over a real
WebSocket (the ``websockets`` library), or over server-sent events or
long-polling (``http_client``, the protocol's HTTP transports; these run
in ``--client-processes`` child processes, two by default, see
``remote``). Each
subscribes to every stream, and then, until the
end, drops its connection at random times (mostly a TCP reset with no close
handshake, sometimes a clean close), waits a little, reconnects to a random
server and resumes from its last position. Meanwhile, optionally, the
servers' Redis connections are cut (``CLIENT KILL``, pub/sub included) and
a server process is killed with SIGKILL and started again.

Every client checks the stream as it arrives: a publication must be the one
after the last (same epoch, offset + 1) unless a ``lost`` frame or an
unrecovered ``subscribed`` said that history was lost (a signalled loss,
counted by reason). At the end the publisher stops, the clients drain, and
each client's publications are compared with what the store assigned, from
the position of its first subscription to the end:

- delivered: received once, with the payload published at that position;
- missing: neither received nor signalled (a silent loss);
- duplicates: a publication at or before the last one received;
- skipped or out of order: a publication that is not the next one, seen
  as it arrives;
- signalled: not received, but the client was told (by reason);
- catch-up: from the start of a reconnect until the client holds every
  publication the store had then (p50, p99, max, per server);
- per transport: these counts for its clients, whatever the server;
- stalls: connections silent for 2 s while their client is behind. A
  stalled client stops dropping that connection and waits, as a real
  client whose pings are still answered would: a stall that never ends
  leaves the client behind at the end, and what it lacks counts as missing.

Clients away for longer than the history window (``--long-away``) must be
told ``outside_window``, and after a flush of the store (``--flush-every``)
``epoch_changed``; a resume refused while the history was there counts as
unjustified. The run fails (exit status 1) on any silent loss, duplicate,
wrong payload, unjustified loss, protocol error, or client that did not
drain.

Loopback only; every wait is bounded; every server is killed and the run's
Redis keys deleted at the end, even on failure.

Run: python -m benchmarks.stress.stream_faults [--clients 200] [--duration 60]
[--rate 50] [--servers uvicorn,daphne] [--transports websocket,sse,poll]
[--history 250] [--drop-every 10] [--kill-redis-every 15] [--restart-every 20]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.stress.stream_faults.client import Client, watch_stalls
from benchmarks.stress.stream_faults.http_client import HttpClient
from benchmarks.stress.stream_faults.remote import Children, RemoteClient
from benchmarks.stress.stream_faults.report import Outcome, summarise
from benchmarks.stress.stream_faults.state import (
    Options,
    Publisher,
    Run,
    logger,
    reset,
)
from django_realtime.streams.stores.base import PolicyTable
from django_realtime.streams.stores.redis import RedisHistoryStore
from django_realtime.testing.streams import drop_redis_connections


def _client(index: int, run: Run, options: Options) -> Client:
    transport = options.transports[index % len(options.transports)]
    if transport == "websocket":
        return Client(index, run, options.seed)
    return HttpClient(index, run, options.seed, transport)


async def _kill_redis(run: Run, every: float) -> None:
    """Cut every Redis connection of the servers' stores, every ``every`` s."""
    while not await run.faults_over(every):
        killed = await drop_redis_connections(
            run.options.redis_url, name_prefix=f"{run.prefix}-streams-"
        )
        run.redis_kills.append(killed)
        run.log(f"cut {killed} Redis connections")


async def _flush_store(run: Run, every: float) -> None:
    """Delete the run's streams every ``every`` s: each starts a new epoch."""
    assert run.publisher is not None
    while not await run.faults_over(every):
        await run.publisher.store.flush()
        run.flushes += 1
        run.log("flushed the store")


async def _restart_servers(run: Run, every: float) -> None:
    """Kill -9 the servers in turn, every ``every`` s, and start them again."""
    turn = 0
    while not await run.faults_over(every):
        slot = run.slots[turn % len(run.slots)]
        turn += 1
        slot.up = False
        slot.current.kill()
        run.restarts += 1
        run.log(f"killed {slot.name}")
        await asyncio.to_thread(run.start_server, slot)
        run.log(f"restarted {slot.name}")


async def run(options: Options) -> Outcome:
    """Run the servers, the publisher, the clients and the faults; compare."""
    prefix = f"bsf{uuid.uuid4().hex[:10]}"
    logs = options.logs or Path(tempfile.mkdtemp(prefix="stream_faults-"))
    logs.mkdir(parents=True, exist_ok=True)
    state = Run(options, prefix, logs)
    store = RedisHistoryStore(
        options.redis_url,
        prefix=prefix,
        policies=PolicyTable(
            {"*": {"max_count": options.history, "max_bytes": None, "max_age": None}}
        ),
        # Not under "<prefix>-streams-": the Redis kills spare the publisher.
        client_name=f"{prefix}-publisher",
    )
    publisher = state.publisher = Publisher(store, state.streams)
    tasks: list[asyncio.Task[None]] = []
    children: Children | None = None
    machine = (
        f"{time.strftime('%Y-%m-%d %H:%M')}  Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load at the start "
        + " ".join(f"{n:.2f}" for n in os.getloadavg())
    )
    try:
        for slot in state.slots:
            await asyncio.to_thread(state.start_server, slot)
        # The HTTP clients run in children, if any; the others here.
        away = [
            i
            for i in range(options.clients)
            if options.client_processes
            and options.transports[i % len(options.transports)] != "websocket"
        ]
        here = sorted(set(range(options.clients)) - set(away))
        clients = [_client(i, state, options) for i in here]
        if away:
            children = Children(state, away, options.client_processes)
            await children.start()
        tasks += [asyncio.create_task(client.live()) for client in clients]
        tasks.append(asyncio.create_task(watch_stalls(state, clients)))
        async with asyncio.timeout(30):
            for client in clients:
                await client.subscribed.wait()
            if children is not None:
                await children.wait_subscribed()
        faults = [
            asyncio.create_task(fault(state, every))
            for every, fault in (
                (options.kill_redis_every, _kill_redis),
                (options.restart_every, _restart_servers),
                (options.flush_every, _flush_store),
            )
            if every
        ]
        loop = asyncio.get_running_loop()
        began = state.began = loop.time()
        await publisher.run(options.rate, options.duration)
        elapsed = loop.time() - began
        # Let a restart under way finish; start any server still down.
        state.faults_off.set()
        fault_errors = [
            error
            for error in await asyncio.gather(*faults, return_exceptions=True)
            if error is not None
        ]
        for slot in state.slots:
            if not slot.up:
                await asyncio.to_thread(state.start_server, slot)
        state.final = dict(publisher.newest)
        state.stopping.set()
        for client in clients:
            client.check_drained()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(options.drain_timeout):
                await state.all_drained.wait()
        now = loop.time()
        for client in clients:
            if client.current is not None and client.silent_from is not None:
                client.current.stall_seconds.append(now - client.silent_from)
                client.current.stuck += 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            if client.ws is not None:
                reset(client.ws)
        remote: list[RemoteClient] = []
        if children is not None:
            remote = await children.finish()
            if len(remote) != len(away):
                raise RuntimeError(
                    f"Expected {len(away)} clients' results from the client "
                    f"processes, got {len(remote)}."
                )
        for stream, newest in state.final.items():
            history = await store.read(stream)
            if history.position != newest:
                publisher.errors += 1
                logger.warning("%s ends at %s, not %s.", stream, history, newest)
        outcome = summarise(state, [*clients, *remote], elapsed, publisher)
        load = " ".join(f"{n:.2f}" for n in os.getloadavg())
        outcome.machine = f"{machine}; load at the end {load}"
        outcome.failures += [f"A fault injector failed: {e!r}" for e in fault_errors]
        return outcome
    finally:
        if children is not None:
            children.kill()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in state.slots:
            for server in slot.incarnations:
                server.kill()
        with contextlib.suppress(Exception):
            await store.flush()
        await store.close()
