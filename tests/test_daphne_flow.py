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

First the gate itself, with no server.
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

from django_realtime.servers.daphne import _FlowGate, flow_controlled
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
