"""A client that stops reading, on a real daphne: the server holds a bounded amount.

daphne's own ``send`` never waits, so without ``flow_controlled`` the
server keeps everything a stalled client cannot take. Here 50 clients read
a broadcast of 16 KiB messages (80 of them, 20 a second) from
``tests.slow_clients_project`` on daphne, while one client (small receive
buffer, Ethernet MSS) stops reading once subscribed and reads again only
once every reader has everything. The stream queue and the layer's channel
capacity are 20 messages, so a server that kept everything (80 messages,
1.3 MB) fails the bounds, and a broadcast that waited for the stalled
client would never reach the readers.

The gate holds through middleware: on ``tests.flow_control_project``, the
recommended stack with a send-wrapping middleware of the user's own, a
client that never reads stalls on daphne as on uvicorn, and the server's
memory stays bounded.

First the gate itself, with no server, then on daphne's own objects in
process (``tests.daphne_connections``), then on real servers.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.middleware.limits import ConnectionLimits
from django_realtime.routing import ProtocolTypeRouter
from django_realtime.servers.daphne import (
    FLOW_GATE,
    FlowControl,
    _FlowGate,
    flow_controlled,
    gate_connection,
)
from tests.daphne_connections import DaphneConnection
from tests.servers import ROOT, ServerProcess, free_port
from tests.slow_clients import (
    APP,
    COUNT,
    GROUP,
    HOST,
    QUEUE,
    READERS,
    REDIS,
    WRITE_BUFFERS,
    SlowClient,
    abort,
    broadcast,
    env_for,
    parse_log,
    tcp_queues,
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


def test_a_scope_and_send_that_are_not_daphnes_pass_through_unchanged() -> None:
    scope = {"type": "websocket"}

    assert gate_connection(scope, _asgi_send) == (scope, _asgi_send)
    assert flow_controlled(_asgi_send, scope) is _asgi_send


class _UserMiddleware:
    """A user's middleware that wraps send; ``awaits=False`` does not wait for it."""

    def __init__(self, application: Any, awaits: bool = True) -> None:
        self.application = application
        self.awaits = awaits
        self.sent: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def wrapped(message: Any) -> None:
            self.sent.append(message)
            if self.awaits:
                await send(message)
            else:
                self.tasks.append(asyncio.ensure_future(send(message)))

        await self.application(dict(scope), receive, wrapped)


class _Consumer:
    """The innermost application: keeps its scope and the send it would use."""

    def __init__(self) -> None:
        self.scope: Any = None
        self.send: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.send = flow_controlled(send, scope)


MESSAGE = {"type": "websocket.send", "text": "x"}


async def _held_until_drained(connection: DaphneConnection, send: Any) -> None:
    """Check that ``send`` waits while the write buffer is full, not after."""
    connection.write_buffer_full()
    waiting = asyncio.create_task(send(MESSAGE))
    for _ in range(3):
        await asyncio.sleep(0)  # let it get as far as it can
    assert not waiting.done()
    assert connection.delivered == []
    # Meanwhile daphne reads nothing more from the client.
    assert connection.tcp.producerState == "paused"

    connection.write_buffer_drained()
    async with asyncio.timeout(5):
        await waiting
    assert connection.delivered == [MESSAGE]
    assert connection.tcp.producerState == "producing"


async def test_protocol_type_router_gates_daphnes_send_for_every_middleware_inside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = DaphneConnection()
    consumer = _Consumer()
    middleware = _UserMiddleware(consumer)
    application = ProtocolTypeRouter({"websocket": middleware})

    await (await connection.start(application))

    assert isinstance(consumer.scope[FLOW_GATE], _FlowGate)
    await _held_until_drained(connection, consumer.send)
    assert middleware.sent == [MESSAGE]
    assert caplog.records == []


async def test_the_consumer_waits_even_behind_a_middleware_that_does_not() -> None:
    connection = DaphneConnection()
    consumer = _Consumer()
    middleware = _UserMiddleware(consumer, awaits=False)

    await (await connection.start(ProtocolTypeRouter({"websocket": middleware})))

    await _held_until_drained(connection, consumer.send)
    await asyncio.gather(*middleware.tasks)


async def test_flow_control_outside_a_users_middleware_gates_what_is_inside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = DaphneConnection()
    consumer = _Consumer()
    router = ProtocolTypeRouter({"websocket": consumer})
    application = FlowControl(_UserMiddleware(router))

    await (await connection.start(application))

    # One gate: the router found it in the scope and put on no other.
    assert isinstance(consumer.scope[FLOW_GATE], _FlowGate)
    await _held_until_drained(connection, consumer.send)
    assert caplog.records == []


async def test_auth_middleware_stack_outermost_gates_daphnes_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = DaphneConnection()
    consumer = _Consumer()
    middleware = _UserMiddleware(consumer)

    await (await connection.start(AuthMiddlewareStack(middleware)))

    assert isinstance(consumer.scope[FLOW_GATE], _FlowGate)
    await _held_until_drained(connection, consumer.send)
    assert middleware.sent == [MESSAGE]
    assert caplog.records == []


async def test_connection_limits_outermost_gates_daphnes_send_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = DaphneConnection()
    consumer = _Consumer()
    application = ConnectionLimits(AuthMiddlewareStack(_UserMiddleware(consumer)))

    await (await connection.start(application))

    assert isinstance(consumer.scope[FLOW_GATE], _FlowGate)
    await _held_until_drained(connection, consumer.send)
    # One gate: the session middleware found it in the scope. A second
    # would have found the connection's producer slot taken, and said so.
    assert caplog.records == []


async def test_a_consumer_handed_daphnes_own_send_puts_the_gate_on_itself() -> None:
    connection = DaphneConnection()
    consumer = _Consumer()

    await (await connection.start(consumer))

    assert FLOW_GATE not in consumer.scope
    await _held_until_drained(connection, consumer.send)


async def test_a_lost_connection_wakes_a_waiting_send_and_reading_stays_off() -> None:
    connection = DaphneConnection()
    consumer = _Consumer()
    await (await connection.start(ProtocolTypeRouter({"websocket": consumer})))
    connection.write_buffer_full()
    waiting = asyncio.create_task(consumer.send(MESSAGE))
    await asyncio.sleep(0)

    connection.lose()

    async with asyncio.timeout(5):
        await waiting
    # daphne drops a send to a connection it has lost.
    assert connection.delivered == []
    assert connection.tcp.producerState == "paused"


@e2e
async def test_a_client_that_stops_reading_is_closed_with_4008_on_daphne(
    tmp_path: Path,
) -> None:
    result = await broadcast(tmp_path, "stream", "close")

    assert result.readers_complete == READERS
    assert result.log.closes == 1
    assert result.log.errors == []
    assert result.stalled.close_code == 4008
    # What it got before the close came from the write buffers, not a queue.
    assert result.stalled.held_bytes <= WRITE_BUFFERS


@e2e
async def test_a_client_that_stops_reading_is_caught_up_from_history_on_daphne(
    tmp_path: Path,
) -> None:
    result = await broadcast(tmp_path, "stream", "catch_up")

    assert result.readers_complete == READERS
    # The queue filled: the sends waited for the client.
    assert result.log.catch_ups >= 1
    assert result.log.errors == []
    stalled = result.stalled
    assert stalled.close_code is None
    assert stalled.caught_up
    # Every publication once and in order, the dropped ones from history.
    assert (stalled.gaps, stalled.duplicates, stalled.lost_frames) == (0, 0, 0)


@e2e
async def test_a_group_member_that_stops_reading_is_skipped_at_capacity_on_daphne(
    tmp_path: Path,
) -> None:
    result = await broadcast(tmp_path, "group")

    assert result.readers_complete == READERS
    # group_send skipped the full member, with a warning and a count.
    assert result.log.layer_dropped > 0
    assert result.log.errors == []
    stalled = result.stalled
    assert stalled.held_bytes <= QUEUE * result.frame_bytes + WRITE_BUFFERS
    # Read again, it got what its channel and the buffers held, then nothing:
    # the rest was dropped for it.
    assert stalled.after_frames < COUNT
    assert not stalled.caught_up


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
        queued, _ = tcp_queues().get((server_port, client_port), (0, 0))
        steady = steady + 1 if queued == last and queued > 0 else 0
        last = queued
        await asyncio.sleep(0.1)  # the kernel's queue cannot be awaited


@e2e
async def test_a_client_that_disconnects_while_its_send_waits_leaves_no_stuck_consumer(
    tmp_path: Path,
) -> None:
    from redis.asyncio import Redis

    from django_realtime.layers.redis import RedisChannelLayer

    prefix = f"slow-{uuid.uuid4().hex[:10]}"
    # Room for everything: the member's handler waits in send, it is never
    # skipped.
    env = env_for(prefix, SLOW_CAPACITY="1000")
    server = await asyncio.to_thread(
        ServerProcess, "daphne", APP, env, tmp_path / "daphne.log"
    )
    layer = RedisChannelLayer([REDIS], prefix=f"{prefix}-layer")
    redis = Redis.from_url(REDIS)
    topic = layer._names.group_topic(GROUP)
    client = SlowClient(stream=False)
    try:
        await client.open(server.url("/ws/group/"), server.port)
        assert await _subscribers(redis, topic) == 1
        pad = "x" * 16384
        for n in range(60):  # 1 MB: far over the write buffer and the kernel's
            await layer.group_send(
                GROUP, {"type": "slow.message", "data": {"n": n, "pad": pad}}
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


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a certificate for 127.0.0.1 and its key; return (key, cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _start_daphne_tls(
    port: int, key: Path, cert: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start daphne on a TLS endpoint at ``port``; return once it listens."""
    endpoint = f"ssl:port={port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    environment["PYTHONPATH"] = str(ROOT)
    argv = ["-m", "daphne", "-e", endpoint, "-v", "0", APP]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)  # a process's listening cannot be awaited
    process.kill()
    raise RuntimeError(f"daphne did not listen on {port}:\n{log.read_text()}")


@e2e
async def test_a_group_member_that_stops_reading_over_tls_is_skipped_at_capacity(
    tmp_path: Path,
) -> None:
    pytest.importorskip("OpenSSL")
    from websockets.asyncio.client import connect

    from django_realtime.layers.redis import RedisChannelLayer

    key, cert = _self_signed_certificate(tmp_path)
    prefix = f"slow-{uuid.uuid4().hex[:10]}"
    env = env_for(prefix, SLOW_CAPACITY=str(QUEUE))
    port = free_port()
    log = tmp_path / "daphne.log"
    process = await asyncio.to_thread(_start_daphne_tls, port, key, cert, env, log)
    layer = RedisChannelLayer([REDIS], prefix=f"{prefix}-layer")
    context = ssl.create_default_context(cafile=str(cert))
    sock = socket.socket()
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
    ws: Any = None
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        ws = await connect(
            f"wss://127.0.0.1:{port}/ws/group/",
            sock=sock,
            ssl=context,
            server_hostname="127.0.0.1",
            max_size=None,
            ping_interval=None,
        )
        ws.transport.pause_reading()
        pad = "x" * 16384
        for n in range(100):  # 1.6 MB, 50 a second
            await layer.group_send(
                GROUP, {"type": "slow.message", "data": {"n": n, "pad": pad}}
            )
            await asyncio.sleep(0.02)  # pacing, not waiting for an event
    finally:
        abort(ws)
        sock.close()
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        await layer.flush()
        await layer.close()
    counts = parse_log(log.read_text(errors="replace"))
    # The member's handler waited in send, its channel filled and
    # group_send skipped it: daphne did not take everything in.
    assert counts.layer_dropped > 0
    assert counts.errors == []


# -- Through the recommended stack and a user's middleware, on both servers --

FLOW_APP = "tests.flow_control_project"
# What a client that never reads offers: far more than the server may hold.
FRAME = b"x" * 65536
FRAMES = 1024  # 64 MiB
# What the server may hold for such a client: a write buffer, one read, and
# its queue of received messages (uvicorn's holds 32), with room to spare;
# a server that took everything would grow by the 64 MiB and their echoes.
HELD = 16 * 1024 * 1024
NO_FLOW_CONTROL = "Flow control is off"


def _rss(pid: int) -> int:
    """Return the resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"No VmRSS in /proc/{pid}/status")


async def _open(server: ServerProcess, path: str) -> tuple[Any, int]:
    """Connect a client with small socket buffers and segments, from an allowed origin.

    Returns the connection and the client's port.
    """
    from websockets.asyncio.client import connect

    sock = socket.socket()
    sock.setblocking(False)
    # Before connect(): the window and the MSS are in the SYN. Small, they
    # keep the kernel's buffers for the connection small on both ends.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (HOST, server.port))
        ws = await connect(
            server.url(path),
            sock=sock,
            origin=f"http://{HOST}:{server.port}",  # type: ignore[arg-type]
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=30,
            close_timeout=1,
        )
    except BaseException:
        sock.close()
        raise
    return ws, sock.getsockname()[1]


async def _until_the_server_stops_reading(
    server_port: int, client_port: int, sender: asyncio.Task[None]
) -> int:
    """Return the bytes the server leaves unread once they stop changing.

    Returns 0 if the client got everything sent first: the server read it all.
    """
    last, steady = -1, 0
    while steady < 10 and not sender.done():
        _, unread = tcp_queues().get((server_port, client_port), (0, 0))
        steady = steady + 1 if unread == last and unread > 0 else 0
        last = unread
        await asyncio.sleep(0.1)  # the kernel's queue cannot be awaited
    return last if steady >= 10 else 0


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("kind", "application"),
    [
        ("daphne", "application"),
        ("daphne", "wrapped_outside"),
        ("uvicorn", "application"),
    ],
)
async def test_an_echo_client_that_never_reads_stalls_and_the_server_stays_bounded(
    tmp_path: Path, kind: str, application: str
) -> None:
    env = {"FLOW_PREFIX": f"flow-{uuid.uuid4().hex[:10]}"}
    server = await asyncio.to_thread(
        ServerProcess, kind, f"{FLOW_APP}:{application}", env, tmp_path / "log"
    )
    ws: Any = None
    sender: asyncio.Task[None] | None = None
    try:
        ws, port = await _open(server, "/ws/echo/")
        await ws.send("hello")
        async with asyncio.timeout(10):
            assert await ws.recv() == "hello"
        baseline = _rss(server.pid)
        ws.transport.pause_reading()

        async def send_everything() -> None:
            for _ in range(FRAMES):
                await ws.send(FRAME)

        sender = asyncio.create_task(send_everything())
        async with asyncio.timeout(60):
            unread = await _until_the_server_stops_reading(server.port, port, sender)

        # The consumer's send waits for the client, so the consumer reads no
        # more, and neither does the server: the client's sends stall.
        assert unread > 0
        assert not sender.done()
        assert _rss(server.pid) - baseline < HELD
        server.check_alive()
    finally:
        if sender is not None:
            sender.cancel()
        abort(ws)
        server.kill()
    assert NO_FLOW_CONTROL not in server.output
    assert "Traceback" not in server.output, server.output[-3000:]


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_a_group_member_never_reading_is_skipped_at_capacity_through_middleware(
    tmp_path: Path, kind: str
) -> None:
    from django_realtime.layers.redis import RedisChannelLayer

    prefix = f"flow-{uuid.uuid4().hex[:10]}"
    env = {"FLOW_PREFIX": prefix, "FLOW_CAPACITY": str(QUEUE)}
    server = await asyncio.to_thread(
        ServerProcess, kind, f"{FLOW_APP}:application", env, tmp_path / "log"
    )
    layer = RedisChannelLayer([REDIS], prefix=f"{prefix}-layer")
    ws: Any = None
    try:
        ws, _ = await _open(server, "/ws/group/")
        await layer.group_send("flow", {"type": "flow.message", "data": {"n": -1}})
        async with asyncio.timeout(10):
            assert await ws.recv() == '{"n": -1}'  # a member of the group
        ws.transport.pause_reading()
        pad = "x" * 16384
        for n in range(100):  # 1.6 MB, 50 a second
            await layer.group_send(
                "flow", {"type": "flow.message", "data": {"n": n, "pad": pad}}
            )
            await asyncio.sleep(0.02)  # pacing, not waiting for an event
        server.check_alive()
    finally:
        abort(ws)
        server.kill()
        await layer.flush()
        await layer.close()
    counts = parse_log(server.output)
    # The member's handler waited in send, its channel filled and
    # group_send skipped it, with a warning and a count.
    assert counts.layer_dropped > 0
    assert counts.errors == []
    assert NO_FLOW_CONTROL not in server.output


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_daphne_warns_when_a_middleware_around_the_router_hides_its_send(
    tmp_path: Path,
) -> None:
    env = {"FLOW_PREFIX": f"flow-{uuid.uuid4().hex[:10]}"}
    server = await asyncio.to_thread(
        ServerProcess, "daphne", f"{FLOW_APP}:unguarded", env, tmp_path / "log"
    )
    ws: Any = None
    try:
        for _ in range(2):
            ws, _ = await _open(server, "/ws/echo/")
            await ws.send("hello")
            async with asyncio.timeout(10):
                assert await ws.recv() == "hello"
            abort(ws)
    finally:
        abort(ws)
        server.kill()
    # Once per process, with the fix.
    assert server.output.count(NO_FLOW_CONTROL) == 1, server.output[-3000:]
    assert "a middleware that no ProtocolTypeRouter encloses" in server.output
    assert "FlowControl" in server.output
