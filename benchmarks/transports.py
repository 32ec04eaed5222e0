"""The suite's transports group: one stream's fan-out over WebSocket, SSE, long-polling.

For each transport a fresh server runs ``benchmarks.transports_app`` (a
:class:`~django_realtime.streams.StreamConsumer` routed over a WebSocket
and over :func:`~django_realtime.streams.http.stream_http_urls`), and
``members`` subscribers of one stream are held by load workers
(:mod:`benchmarks.transports_worker`, raw sockets under epoll). A
publisher, a WebSocket connection, sends ``publish`` requests, each
publishing one stamped message to the stream; the phases are those of
the group fan-out (:func:`benchmarks.groups.fanout`): one warm-up
message, paced publishing, then a burst. Also measured: the server's RSS
growth per idle subscriber, between before the subscribers came and once
they have all settled.

The HTTP subscribers share one client id, made by one subscribe at the
start (``POST``, as a page would): without a session a client id is not
bound to anyone, and the server keeps nothing per client between requests,
so what is measured is the waiting ``GET`` each subscriber holds.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks import groups, workers
from benchmarks.servers import Server
from example_project.c10k.client import LoadConnection, connect

if TYPE_CHECKING:
    from benchmarks.steps import App, Run

TRANSPORTS = ("websocket", "sse", "poll")
APP = "benchmarks.transports_app:application"
SETTINGS = "benchmarks.transports_settings"
# As in benchmarks.transports_app (not imported: it sets Django up).
STREAM = "bench.fan"
WS_PATH = "/ws/streams/"
HTTP_PREFIX = "/rt/streams/"


class _Publisher:
    """Send each message as the data of a ``publish`` request."""

    def __init__(self, connection: LoadConnection) -> None:
        self.connection = connection
        self.sent = 0
        connection.on_message = lambda data, now_ns: None  # the replies

    async def send_text(self, text: str) -> None:
        self.sent += 1
        frame = {"kind": "request", "id": self.sent, "type": "publish", "data": text}
        await self.connection.send_text(json.dumps(frame))


async def _http(port: int, request: bytes) -> tuple[int, bytes, Any]:
    """Return the status, head and JSON body of one request (connection closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(30):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        decoded, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if not size:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    return status, head, json.loads(body)


async def subscribe_once(port: int) -> dict[str, Any]:
    """Return a client id listing the stream, its position, the CSRF cookie.

    As a page does: a first poll for a client id and the CSRF token, then
    a ``POST`` subscribe with both.
    """
    host = f"127.0.0.1:{port}"
    get = f"GET {HTTP_PREFIX}poll HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    status, head, first = await _http(port, get.encode())
    cookie = re.search(rb"csrftoken=([^;\s]+)", head)
    if status != 200 or cookie is None:
        raise RuntimeError(f"Expected a client id and a CSRF cookie, got {head!r}.")
    body = json.dumps({"kind": "subscribe", "id": 1, "stream": STREAM}).encode()
    post = (
        f"POST {HTTP_PREFIX} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Realtime-Client: {first['client']}\r\nX-CSRFToken: {first['csrf']}\r\n"
        f"Cookie: csrftoken={cookie[1].decode()}\r\n\r\n"
    ).encode()
    status, head, answer = await _http(port, post + body)
    subscribed = answer.get("frames", [{}])[0] if status == 200 else {}
    if subscribed.get("kind") != "subscribed":
        raise RuntimeError(f"Expected a subscribed frame, got {status} {answer}.")
    position = [subscribed["epoch"], subscribed["offset"]]
    return {
        "client": answer["client"],
        "positions": {STREAM: position},
        "cookie": cookie[1].decode(),
    }


@dataclass
class TransportRun:
    subscribers: int
    rss_per_subscriber_kib: float
    paced: groups.FanoutResult
    burst: groups.FanoutResult
    failures: collections.Counter[str]
    ready: bool


async def fanout(
    server: Server,
    transport: str,
    *,
    members: int,
    paced_rate: float,
    paced_seconds: float,
    burst: int,
    size: int,
    drain_timeout: float,
    settle: float,
    processes: int,
    cpus: set[int] | None,
) -> TransportRun:
    """Measure ``members`` subscribers of one stream over ``transport``."""
    connection = await connect(server.url(WS_PATH))
    publisher = _Publisher(connection)
    try:
        config: dict[str, Any] = {
            "ws_path": WS_PATH,
            "http_prefix": HTTP_PREFIX,
            "stream": STREAM,
        }
        if transport != "websocket":
            config.update(await subscribe_once(server.port))
        await asyncio.sleep(settle)
        rss_before = server.rss_kib()
        async with workers.running(
            transport,
            f"http://127.0.0.1:{server.port}",
            members,
            size=size,
            processes=processes,
            cpus=cpus,
            module="benchmarks.transports_worker",
            last_argument=json.dumps(config),
        ) as (started, failures):
            await asyncio.sleep(settle)
            opened = sum(worker.opened for worker in started)
            growth = (server.rss_kib() - rss_before) / max(1, opened)
            phase = functools.partial(
                groups.publish_phase,
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
        connection.abort()
    return TransportRun(opened, growth, paced, burst_result, failures, warm.lost == 0)


async def step(run: Run, server_name: str, app: App) -> None:
    """Measure each transport on a fresh ``server_name``; record the rows."""
    sizes = run.sizes
    for transport in TRANSPORTS:

        async def body(server: Server, transport: str = transport) -> dict[str, Any]:
            result = await fanout(
                server,
                transport,
                members=sizes.members,
                paced_rate=sizes.paced_rate,
                paced_seconds=sizes.paced_seconds,
                burst=sizes.burst,
                size=sizes.echo_size,
                drain_timeout=sizes.drain_timeout,
                settle=sizes.settle,
                processes=run.processes,
                cpus=run.client_cpus,
            )
            label = run.label(server_name, app, f"stream over {transport}")
            run.note_failures(f"{label} subscribers", result.failures)
            if not result.ready:
                run.notes.append(f"{label}: not every subscriber got the warm-up.")
            key = f"tr_{transport}"
            values: dict[str, float | None] = {
                f"{key}_rss": result.rss_per_subscriber_kib
            }
            for phase, fan in (("paced", result.paced), ("burst", result.burst)):
                values[f"{key}_{phase}_rate"] = fan.rate
                values[f"{key}_{phase}_p50"] = fan.p50_ms
                values[f"{key}_{phase}_p99"] = fan.p99_ms
                values[f"{key}_{phase}_lost"] = float(fan.lost)
                values[f"{key}_{phase}_server_cpu"] = fan.server_cpu
                values[f"{key}_{phase}_client_cpu"] = fan.client_cpu
            return values

        keys = [f"tr_{transport}_{phase}_rate" for phase in ("paced", "burst")]
        what = f"stream to {sizes.members:,} over {transport}"
        await run.measure(server_name, app, what, keys, body)
