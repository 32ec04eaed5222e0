"""LocalSocket: a WebSocket to an ASGI application in process, and its edges."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_realtime.ops.cli.local import LocalSocket, Refused, websocket_scope
from django_realtime.ops.cli.routes import default_stream_path, stream_routes
from django_realtime.ops.cli.tail import TailReader

pytestmark = pytest.mark.timeout(10)

SCOPE = websocket_scope("/ws/x/?a=1", "localhost", {"Origin": "http://localhost"})


def test_the_scope_has_the_path_query_and_headers_a_server_would_give() -> None:
    assert (SCOPE["path"], SCOPE["query_string"]) == ("/ws/x/", b"a=1")
    assert (b"origin", b"http://localhost") in SCOPE["headers"]
    assert (b"host", b"localhost") in SCOPE["headers"]


async def test_frames_come_back_text_and_binary_then_the_close() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await send({"type": "websocket.send", "bytes": b"\x01"})
        await send({"type": "websocket.close", "code": 4003, "reason": "bye"})

    connection = LocalSocket(app, SCOPE)
    await connection.open()
    await connection.send_text("hi")
    assert await connection.receive() == "hi"
    assert await connection.receive() == b"\x01"
    with pytest.raises(Refused) as caught:
        await connection.receive()
    assert (caught.value.code, caught.value.reason, caught.value.accepted) == (
        4003,
        "bye",
        True,
    )
    await connection.close()


async def test_an_application_that_fails_or_ends_says_so() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise ValueError("broken consumer")

    async def leaving(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    with pytest.raises(ValueError, match="broken consumer"):
        await LocalSocket(failing, SCOPE).open()
    connection = LocalSocket(leaving, SCOPE)
    await connection.open()
    with pytest.raises(RuntimeError, match="ended without closing"):
        await connection.receive()
    await connection.close()


async def test_a_wrong_answer_to_the_handshake_is_named() -> None:
    async def http(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await asyncio.Event().wait()

    connection = LocalSocket(http, SCOPE)
    with pytest.raises(RuntimeError, match=r"got 'http\.response\.start'"):
        await connection.open()
    await connection.close(grace=0.1)


async def test_an_application_that_ignores_the_disconnect_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    connection = LocalSocket(stubborn, SCOPE)
    await connection.open()
    await connection.close(grace=0.05)
    assert cancelled.is_set()


def test_routes_are_not_followed_for_ever_and_none_found_asks_for_a_path() -> None:
    class Loop:
        def __init__(self) -> None:
            self.inner: Any = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    first, second = Loop(), Loop()
    first.inner, second.inner = second, first
    assert stream_routes(first) == []
    with pytest.raises(CommandError, match="no route to a StreamConsumer") as caught:
        default_stream_path(first)
    assert caught.value.returncode == 2


def test_the_tail_reader_notes_frames_that_are_not_its_streams() -> None:
    reader = TailReader("s", None, count=None)
    assert "binary frame of 2 bytes" in (reader.take(b"ab").note or "")
    assert "Another frame: not json" in (reader.take("not json").note or "")
    assert reader.resume_note() is None


def test_connect_says_when_nothing_listens_at_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CommandError, match="Could not open a WebSocket") as caught:
        call_command(
            "realtime",
            "connect",
            f"ws://127.0.0.1:{port}/",
            stdin=io.StringIO(""),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    assert caught.value.returncode == 1
