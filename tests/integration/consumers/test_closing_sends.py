"""Sends to a connection that is closing or gone are dropped, not raised.

A consumer may send after its own close (a layer message handled after a
drain's or a handler's close) or to a client that has just gone. Servers
raise there (uvicorn: RuntimeError after a close, ClientDisconnected once the
client has gone; daphne: autobahn's Disconnected while the close handshake
runs); the consumer drops the send with a DEBUG line and ends normally when
the disconnect arrives.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from autobahn.exception import Disconnected

from django_realtime.consumers import AsyncWebsocketConsumer, WebsocketConsumer
from tests.servers import serving

pytestmark = pytest.mark.timeout(30)

Message = dict[str, Any]


class Server:
    """Play a server that raises on sends after a close, or after the client left."""

    def __init__(
        self, frames: list[Message], gone: BaseException | None = None
    ) -> None:
        self.inbox = [{"type": "websocket.connect"}, *frames]
        self.gone = gone
        self.closed = False
        self.sent: list[Message] = []
        self.done = asyncio.Event()

    async def receive(self) -> Message:
        if self.inbox:
            return self.inbox.pop(0)
        await self.done.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: Message) -> None:
        if self.closed:
            raise RuntimeError(
                f"Unexpected ASGI message {message['type']!r}, after sending "
                "'websocket.close'."
            )
        if self.gone is not None and message["type"] == "websocket.send":
            raise self.gone
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.closed = True
            self.done.set()

    async def serve(self, app: Any) -> None:
        scope = {"type": "websocket", "path": "/ws/", "headers": [], "subprotocols": []}
        await asyncio.wait_for(app(scope, self.receive, self.send), 5)


class CloseThenSend(AsyncWebsocketConsumer):
    codes: list[int] = []

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.close(4001)
        await self.send("after the close")
        await self.channel_layer.send(self.channel_name, {"type": "late"})

    async def late(self, message: Message) -> None:
        await self.send("after the close, from the layer")

    async def disconnect(self, code: int) -> None:
        self.codes.append(code)


async def test_sends_after_the_consumers_close_are_dropped_with_a_debug_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    CloseThenSend.codes = []
    server = Server([{"type": "websocket.receive", "text": "bye"}])
    with caplog.at_level(logging.DEBUG, logger="django_realtime"):
        await server.serve(CloseThenSend.as_asgi())
    assert server.sent == [
        {"type": "websocket.accept", "subprotocol": None},
        {"type": "websocket.close", "code": 4001},
    ]
    assert CloseThenSend.codes == [1000]
    dropped = [r.getMessage() for r in caplog.records if "Dropped" in r.getMessage()]
    assert dropped[0] == "Dropped websocket.send to WebSocket /ws/: it is closing."
    # (The shared in-memory layer may report what earlier tests left.)
    assert not [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and r.name.startswith("django_realtime.consumers")
    ]


@pytest.mark.parametrize(
    "gone",
    [
        ConnectionResetError("client left"),
        Disconnected("Attempt to send on a closed protocol"),
        # uvicorn, once it has closed the connection itself.
        RuntimeError(
            "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'."
        ),
    ],
    ids=["OSError", "autobahn", "uvicorn-closed"],
)
@pytest.mark.parametrize("consumer", ["async", "sync"])
async def test_a_send_to_a_client_that_has_gone_is_dropped_and_the_consumer_ends(
    gone: BaseException, consumer: str, caplog: pytest.LogCaptureFixture
) -> None:
    ended: list[int] = []

    class AsyncEcho(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: Any = None
        ) -> None:
            await self.send(text_data)

        async def disconnect(self, code: int) -> None:
            ended.append(code)

    class SyncEcho(WebsocketConsumer):
        def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
            self.send(text_data)

        def disconnect(self, code: int) -> None:
            ended.append(code)

    app = (AsyncEcho if consumer == "async" else SyncEcho).as_asgi()
    server = Server([{"type": "websocket.receive", "text": "hi"}], gone=gone)
    server.done.set()
    with caplog.at_level(logging.DEBUG, logger="django_realtime"):
        await server.serve(app)
    assert ended == [1000]
    assert any("the connection has gone" in r.getMessage() for r in caplog.records), (
        caplog.text
    )


async def test_other_server_errors_still_reach_the_server() -> None:
    server = Server(
        [{"type": "websocket.receive", "text": "hi"}],
        gone=RuntimeError("Expected ASGI message 'websocket.send', but got 'x'."),
    )
    server.done.set()

    class Echo(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: Any = None
        ) -> None:
            await self.send(text_data)

    with pytest.raises(RuntimeError, match="but got 'x'"):
        await server.serve(Echo.as_asgi())


# The same against the real servers, whose exceptions these are.


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["uvicorn", "daphne"])
def test_real_servers_log_no_traceback_for_sends_after_a_close(
    name: str, tmp_path: Path
) -> None:
    async def talk(url: str) -> list[tuple[str, Any]]:
        seen: list[tuple[str, Any]] = []
        for text in ("held", "layer"):
            async with websockets.connect(url) as ws:
                await ws.send(text)
                try:
                    seen.append(("frame", await asyncio.wait_for(ws.recv(), 5)))
                except websockets.ConnectionClosed as closed:
                    seen.append(("close", closed.rcvd.code if closed.rcvd else None))
        return seen

    log = tmp_path / "server.log"
    with serving(
        name, "tests.integration.consumers.closing_app:application", {}, log
    ) as server:
        assert asyncio.run(talk(server.url("/ws/close-then-send/"))) == [
            ("close", 4001),
            ("close", 4001),
        ]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
        except urllib.error.HTTPError as error:
            status = error.code
        else:
            status = 200
        # Give the layer message time to arrive after the close.
        asyncio.run(asyncio.sleep(0.5))
        server.check_alive()
    output = log.read_text()
    assert status == 404
    assert "Traceback" not in output, output
    assert "it is closing" in output or "has gone" in output, output
