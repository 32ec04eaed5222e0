"""Tests for the c10k load client: real servers on loopback, and a scripted one.

uvicorn and daphne run the test project's application (an echo consumer at
``/ws/echo/``, a refused handshake elsewhere) in child processes. What those
servers never send (fragmented messages, pings between fragments, bad frames,
refusals with bodies) comes from a scripted server in the test process, which
also checks the client's frames byte by byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import signal
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from django_realtime.exceptions import RealtimeError
from example_project.c10k.client import (
    ConnectionClosed,
    HandshakeError,
    LoadConnection,
    SourceAddresses,
    connect,
)
from tests.servers import ServerProcess, free_port, serving

pytestmark = pytest.mark.timeout(60)

APPLICATION = "tests.asgi:application"
IO_TIMEOUT = 10.0
# The scripted servers never answer a close frame: the close gives up this soon.
UNANSWERED_CLOSE = 0.05

ENV = {"DJANGO_SETTINGS_MODULE": "tests.settings"}


def running(
    name: str, log_path: Path, *options: str
) -> contextlib.AbstractContextManager[ServerProcess]:
    """Serve the test project on ``name`` (uvicorn or daphne) for a ``with`` block."""
    return serving(name, APPLICATION, ENV, log_path, options)


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log_path = tmp_path_factory.mktemp("loadclient") / f"{request.param}.log"
    with running(request.param, log_path) as started:
        yield started


async def recv(connection: LoadConnection) -> str | bytes:
    async with asyncio.timeout(IO_TIMEOUT):
        return await connection.recv()


# -- real servers -------------------------------------------------------------


@pytest.mark.e2e
async def test_text_and_binary_messages_round_trip(server: ServerProcess) -> None:
    connection = await connect(server.url("/ws/echo/"))

    await connection.send_text("héllo")
    await connection.send_bytes(b"\x00\xff\x80")

    assert await recv(connection) == "héllo"
    assert await recv(connection) == b"\x00\xff\x80"
    assert connection.received == 2
    assert connection.close_code is None
    await connection.close()


@pytest.mark.e2e
async def test_large_messages_round_trip_in_both_directions(
    server: ServerProcess,
) -> None:
    connection = await connect(server.url("/ws/echo/"))
    # Under daphne's default limit of 1 MiB; lengths take 64 bits.
    text = "0123456789abcdé" * 60_000
    data = bytes(range(256)) * 1_200  # every byte value

    await connection.send_text(text)
    await connection.send_bytes(data)

    assert await recv(connection) == text
    assert await recv(connection) == data
    await connection.close()


@pytest.mark.e2e
async def test_many_concurrent_connections_each_get_their_own_replies(
    server: ServerProcess,
) -> None:
    connections = [await connect(server.url("/ws/echo/")) for _ in range(20)]

    async def talk(index: int, connection: LoadConnection) -> list[str | bytes]:
        replies = []
        for turn in range(5):
            await connection.send_text(f"{index}-{turn}-" + "x" * 64)
            replies.append(await recv(connection))
        return replies

    results = await asyncio.gather(*map(talk, range(20), connections))

    for index, replies in enumerate(results):
        assert replies == [f"{index}-{turn}-" + "x" * 64 for turn in range(5)]
    await asyncio.gather(*(connection.close() for connection in connections))


@pytest.mark.e2e
async def test_refused_handshake_raises_handshake_error_with_the_status(
    server: ServerProcess,
) -> None:
    with pytest.raises(HandshakeError) as refused:
        await connect(server.url("/ws/nowhere/"))

    assert refused.value.status == 403
    assert isinstance(refused.value, RealtimeError)
    assert "Expected HTTP status 101, got 403." in str(refused.value)


@pytest.mark.e2e
async def test_close_runs_the_closing_handshake(server: ServerProcess) -> None:
    connection = await connect(server.url("/ws/echo/"))
    await connection.send_text("bye")
    assert await recv(connection) == "bye"

    started = time.monotonic()
    await connection.close(code=1000, timeout=IO_TIMEOUT)

    # The server's close frame arrived, and it ended the TCP connection.
    assert connection.close_code == 1000
    assert time.monotonic() - started < IO_TIMEOUT
    with pytest.raises(ConnectionClosed) as closed:
        await connection.recv()
    assert closed.value.code == 1000
    with pytest.raises(ConnectionClosed):
        await connection.send_text("too late")


@pytest.mark.e2e
async def test_abort_drops_the_connection_without_a_close_frame(
    server: ServerProcess,
) -> None:
    connection = await connect(server.url("/ws/echo/"))

    connection.abort()
    await connection.close()  # returns at once: nothing left to close

    assert connection.close_code == 1006
    with pytest.raises(ConnectionClosed) as closed:
        await connection.recv()
    assert closed.value.code == 1006


@pytest.mark.e2e
async def test_uvicorn_shutting_down_reaches_a_waiting_recv(tmp_path: Path) -> None:
    with running("uvicorn", tmp_path / "uvicorn.log") as uvicorn:
        connection = await connect(uvicorn.url("/ws/echo/"))
        waiting = asyncio.ensure_future(connection.recv())
        await asyncio.sleep(0)  # let recv() start waiting

        uvicorn.process.send_signal(signal.SIGTERM)

        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(IO_TIMEOUT):
                await waiting
        assert closed.value.code == 1012  # service restart
        assert connection.close_code == 1012


@pytest.mark.e2e
async def test_pings_from_the_server_are_answered(tmp_path: Path) -> None:
    options = ("--ws-ping-interval=0.1", "--ws-ping-timeout=0.2")
    with running("uvicorn", tmp_path / "uvicorn.log", *options) as uvicorn:
        connection = await connect(uvicorn.url("/ws/echo/"))

        # Without pongs uvicorn closes the connection 0.3 s after it opens;
        # this is several ping intervals more.
        await asyncio.sleep(0.8)

        assert connection.close_code is None
        await connection.send_text("still here")
        assert await recv(connection) == "still here"
        await connection.close()


@pytest.mark.e2e
async def test_source_addresses_are_the_ones_the_server_sees(tmp_path: Path) -> None:
    sources = SourceAddresses(["127.0.0.2", "127.0.0.3"], per_host=2)
    # uvicorn's access log says which address each connection came from.
    options = ("--access-log", "--log-level=info")
    with running("uvicorn", tmp_path / "uvicorn.log", *options) as uvicorn:
        connections = [
            await connect(uvicorn.url("/ws/echo/"), local_addr=sources.next())
            for _ in range(5)
        ]
        hosts = [connection.local_address[0] for connection in connections]
        assert hosts == ["127.0.0.2"] * 2 + ["127.0.0.3"] * 2 + ["127.0.0.2"]
        for connection in connections:
            await connection.send_text("ping")
            assert await recv(connection) == "ping"
        log = uvicorn.output
        for connection in connections:
            host, port = connection.local_address
            assert f'{host}:{port} - "WebSocket /ws/echo/" [accepted]' in log
            await connection.close()


@pytest.mark.e2e
async def test_on_message_gets_each_message_with_a_monotonic_stamp(
    server: ServerProcess,
) -> None:
    connection = await connect(server.url("/ws/echo/"))
    arrived: list[tuple[str | bytes, int]] = []
    done = asyncio.get_running_loop().create_future()

    def on_message(data: str | bytes, now_ns: int) -> None:
        arrived.append((data, now_ns))
        if len(arrived) == 3 and not done.done():
            done.set_result(None)

    connection.on_message = on_message
    before = time.monotonic_ns()
    for text in ("a", "b", "c"):
        await connection.send_text(text)
    async with asyncio.timeout(IO_TIMEOUT):
        await done

    assert [data for data, _ in arrived] == ["a", "b", "c"]
    stamps = [stamp for _, stamp in arrived]
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= time.monotonic_ns()
    assert connection.received == 3
    with pytest.raises(RuntimeError, match="on_message"):
        await connection.recv()
    await connection.close()


async def test_refused_tcp_connection_is_an_oserror() -> None:
    with pytest.raises(ConnectionRefusedError):
        await connect(f"ws://127.0.0.1:{free_port()}/", local_addr=("127.0.0.2", 0))


async def test_only_ws_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="Expected a ws://host"):
        await connect("wss://127.0.0.1:1/")


# -- a scripted server ----------------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """Return an unmasked server frame."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65_536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """Read one client frame; check that it is masked and unmask it."""
    first, second = await reader.readexactly(2)
    assert second & 0x80, "client frames must be masked"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4)
    masked = await reader.readexactly(size)
    payload = bytes(byte ^ key[index % 4] for index, byte in enumerate(masked))
    return bool(first & 0x80), first & 0x0F, payload


def accept_answer(request: bytes) -> bytes:
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[str, list[BaseException]]]:
    """Serve ``script(reader, writer, request)`` on a free loopback port.

    On exit, wait for the scripts to end: what they saw is then complete.
    """
    failures: list[BaseException] = []
    done: list[asyncio.Future[None]] = []

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ended = asyncio.get_running_loop().create_future()
        done.append(ended)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            await script(reader, writer, request)
        except (AssertionError, asyncio.IncompleteReadError) as failure:
            failures.append(failure)
        finally:
            writer.close()
            ended.set_result(None)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"ws://127.0.0.1:{port}", failures
        async with asyncio.timeout(IO_TIMEOUT):
            await asyncio.gather(*done)


async def test_request_carries_the_path_origin_and_extra_headers() -> None:
    seen: list[bytes] = []

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        seen.append(request)
        writer.write(accept_answer(request))
        await reader.read()

    async with scripted(script) as (url, failures):
        connection = await connect(
            f"{url}/ws/echo/?room=1",
            headers={"Cookie": "sessionid=abc"},
            origin="http://127.0.0.1:8000",
        )
        await connection.close(timeout=UNANSWERED_CLOSE)

    head = seen[0].decode().split("\r\n")
    assert head[0] == "GET /ws/echo/?room=1 HTTP/1.1"
    assert f"Host: {url.removeprefix('ws://')}" in head
    assert "Cookie: sessionid=abc" in head
    assert "Origin: http://127.0.0.1:8000" in head
    assert "Sec-WebSocket-Version: 13" in head
    assert not failures


@pytest.mark.parametrize("size", [0, 1, 5, 125, 126, 65_535, 65_536, 200_003])
async def test_client_frames_are_masked_and_sized_per_rfc_6455(size: int) -> None:
    received: list[tuple[bool, int, bytes]] = []

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        received.append(await read_frame(reader))
        received.append(await read_frame(reader))
        writer.write(frame(1, b"done"))

    payload = os.urandom(size)
    async with scripted(script) as (url, failures):
        connection = await connect(url)
        await connection.send_bytes(payload)
        await connection.send_text("é" * size)
        assert await recv(connection) == "done"

    assert not failures
    assert received == [(True, 2, payload), (True, 1, ("é" * size).encode())]


async def test_sends_wait_while_the_server_does_not_read() -> None:
    reading = asyncio.Event()
    size = 8 * 1024 * 1024

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        await reading.wait()
        _, _, payload = await read_frame(reader)
        writer.write(frame(1, str(len(payload)).encode()))
        await reader.read()

    async with scripted(script) as (url, failures):
        connection = await connect(url)
        sending = asyncio.ensure_future(connection.send_bytes(b"x" * size))
        await asyncio.sleep(0.1)
        # More than the socket buffers hold is waiting in the transport.
        assert not sending.done()
        reading.set()
        async with asyncio.timeout(IO_TIMEOUT):
            await sending
        assert await recv(connection) == str(size)
        await connection.close(timeout=UNANSWERED_CLOSE)

    assert not failures


async def test_a_recv_that_timed_out_loses_nothing() -> None:
    go = asyncio.Event()

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        await go.wait()
        writer.write(frame(1, b"late"))
        await reader.read()

    async with scripted(script) as (url, failures):
        connection = await connect(url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await connection.recv()
        go.set()
        assert await recv(connection) == "late"
        await connection.close(timeout=UNANSWERED_CLOSE)

    assert not failures


async def test_only_one_recv_may_wait_at_a_time() -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        await reader.read()

    async with scripted(script) as (url, _):
        connection = await connect(url.replace("127.0.0.1", "localhost"))
        first = asyncio.ensure_future(connection.recv())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="one recv\\(\\) at a time"):
            await connection.recv()
        await connection.close(timeout=UNANSWERED_CLOSE)
        with pytest.raises(ConnectionClosed):
            await first


async def test_host_names_are_resolved_for_bound_connections() -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        await reader.read()

    async with scripted(script) as (url, _):
        connection = await connect(
            url.replace("127.0.0.1", "localhost"), local_addr=("127.0.0.4", 0)
        )
        assert connection.local_address[0] == "127.0.0.4"
        assert repr(connection).startswith("<LoadConnection 127.0.0.4:")
        assert repr(connection).endswith(" open, 0 received>")
        connection.abort()
        await connection.wait_closed()
        assert repr(connection).endswith(" closed 1006, 0 received>")


async def test_fragmented_messages_are_reassembled_around_pings() -> None:
    pongs: list[tuple[bool, int, bytes]] = []

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        text = "fragmentéd".encode()
        writer.write(frame(1, text[:3], fin=False))
        writer.write(frame(9, b"ping-1"))  # control frames may come in between
        writer.write(frame(0, text[3:9], fin=False))  # splits the é
        writer.write(frame(0, text[9:]))
        writer.write(frame(2, b"\x01\x02", fin=False) + frame(0, b"\x03"))
        writer.write(frame(2, b"whole"))
        pongs.append(await read_frame(reader))
        await reader.read()

    async with scripted(script) as (url, failures):
        connection = await connect(url)
        assert await recv(connection) == "fragmentéd"
        assert await recv(connection) == b"\x01\x02\x03"
        assert await recv(connection) == b"whole"
        await connection.close(timeout=UNANSWERED_CLOSE)

    assert not failures
    assert pongs == [(True, 10, b"ping-1")]
    assert connection.received == 3


async def test_frames_split_across_reads_are_put_back_together() -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        data = (
            accept_answer(request)
            + frame(1, b"a" * 300)
            + frame(2, b"b" * 70_000)
            + frame(1, b"c")
        )
        for start in range(0, len(data), 7_001):
            writer.write(data[start : start + 7_001])
            await writer.drain()
            await asyncio.sleep(0.001)  # one chunk per read
        await reader.read()

    async with scripted(script) as (url, failures):
        connection = await connect(url)
        assert await recv(connection) == "a" * 300
        assert await recv(connection) == b"b" * 70_000
        assert await recv(connection) == "c"
        await connection.close(timeout=UNANSWERED_CLOSE)

    assert not failures


async def test_server_close_is_echoed_and_queued_messages_come_first() -> None:
    echoed: list[tuple[bool, int, bytes]] = []

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request) + frame(1, b"last words"))
        writer.write(frame(8, struct.pack("!H", 4001) + b"bye"))
        echoed.append(await read_frame(reader))

    async with scripted(script) as (url, failures):
        connection = await connect(url)
        async with asyncio.timeout(IO_TIMEOUT):
            await connection.wait_closed()
        assert connection.close_code == 4001
        assert connection.close_reason == "bye"
        assert await connection.recv() == "last words"
        with pytest.raises(ConnectionClosed) as closed:
            await connection.recv()
        await connection.close()

    assert (closed.value.code, closed.value.reason) == (4001, "bye")
    assert echoed == [(True, 8, struct.pack("!H", 4001))]
    assert not failures


@pytest.mark.parametrize(
    ("bad_frame", "code"),
    [
        (b"\x81\x81abcd" + b"x", 1002),  # masked by the server
        (b"\xc1\x01x", 1002),  # RSV1 without an extension
        (frame(1, b"\xff\xfe"), 1007),  # not UTF-8
        (frame(0, b"orphan"), 1002),  # continuation of nothing
        (frame(9, b"x", fin=False), 1002),  # fragmented control frame
    ],
    ids=["masked", "rsv1", "utf8", "continuation", "fragmented-ping"],
)
async def test_protocol_errors_fail_the_connection_with_a_close_code(
    bad_frame: bytes, code: int
) -> None:
    closes: list[tuple[bool, int, bytes]] = []

    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request) + bad_frame)
        closes.append(await read_frame(reader))

    async with scripted(script) as (url, _):
        connection = await connect(url)
        with pytest.raises(ConnectionClosed) as closed:
            await recv(connection)

    assert closed.value.code == code
    assert connection.close_code == code
    assert closes[0][:2] == (True, 8)
    assert struct.unpack("!H", closes[0][2][:2]) == (code,)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno route!",
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nno \r\n6\r\nroute!\r\n0\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\n\r\nno route!",  # the body ends at EOF
    ],
    ids=["content-length", "chunked", "eof"],
)
async def test_refusal_keeps_the_status_and_body(answer: bytes) -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(answer)

    async with scripted(script) as (url, _):
        with pytest.raises(HandshakeError) as refused:
            await connect(url)

    assert (refused.value.status, refused.value.body) == (404, b"no route!")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "Expected an HTTP status line"),
        (
            b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: wrong\r\n\r\n",
            "Expected Sec-WebSocket-Accept",
        ),
        (
            b"HTTP/1.1 101 Switching\r\nUpgrade: h2c\r\n\r\n",
            "Expected 'Upgrade: websocket'",
        ),
    ],
    ids=["not-http", "bad-accept", "not-websocket"],
)
async def test_answers_that_are_not_a_websocket_upgrade_fail(
    answer: bytes, message: str
) -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(answer)
        await reader.read()

    async with scripted(script) as (url, _):
        with pytest.raises(HandshakeError, match=message):
            await connect(url)


async def test_a_server_that_never_answers_times_out() -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        await reader.read()

    async with scripted(script) as (url, _):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await connect(url, timeout=0.3)

    assert time.monotonic() - started < 2


async def test_a_server_that_closes_before_answering_is_a_connection_error() -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        pass

    async with scripted(script) as (url, _):
        with pytest.raises(ConnectionResetError, match="Expected an HTTP answer"):
            await connect(url)


async def test_close_gives_up_on_a_server_that_does_not_answer() -> None:
    async def script(reader, writer, request):  # type: ignore[no-untyped-def]
        writer.write(accept_answer(request))
        await reader.read()

    async with scripted(script) as (url, _):
        connection = await connect(url)
        started = time.monotonic()
        await connection.close(timeout=0.2)

    assert 0.2 <= time.monotonic() - started < 2
    assert connection.close_code == 1006


# -- source addresses -------------------------------------------------------------


def test_source_addresses_move_to_the_next_host_every_per_host() -> None:
    sources = SourceAddresses(per_host=2)

    first = [sources.next() for _ in range(5)]

    assert first == [
        ("127.0.0.1", 0),
        ("127.0.0.1", 0),
        ("127.0.0.2", 0),
        ("127.0.0.2", 0),
        ("127.0.0.3", 0),
    ]
    assert sources.count == 5


def test_source_addresses_start_again_after_the_last_host() -> None:
    sources = SourceAddresses(["127.0.0.5", "127.0.0.6"], per_host=1)

    hosts = [sources.next()[0] for _ in range(5)]

    assert hosts == ["127.0.0.5", "127.0.0.6", "127.0.0.5", "127.0.0.6", "127.0.0.5"]


def test_source_addresses_default_to_loopback_hosts_1_to_254() -> None:
    hosts = SourceAddresses().hosts

    assert (hosts[0], hosts[-1], len(hosts)) == ("127.0.0.1", "127.0.0.254", 254)


@pytest.mark.parametrize(
    ("hosts", "per_host", "message"),
    [([], 1, "at least one source host"), (None, 0, "per_host >= 1")],
)
def test_source_addresses_reject_nonsense(
    hosts: list[str] | None, per_host: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SourceAddresses(hosts, per_host=per_host)
