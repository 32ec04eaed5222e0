"""One client WebSocket connection of the ``testecho`` client.

A :class:`LoadConnection` is one :class:`asyncio.Protocol` speaking RFC 6455
over a plain TCP transport: no task per connection or per message, no
extension, no payload copy beyond what framing needs; the bytes on the wire
are made and read by :mod:`example_project.c10k.client.wire`. It trusts the
peer the way a load client can: messages have no size limit and are queued
until read unless :attr:`LoadConnection.on_message` is set.
"""

# The timeout parameters are part of the agreed API (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import collections
import struct
import time
from collections.abc import Callable

from django_realtime.exceptions import RealtimeError
from example_project.c10k.client.wire import (
    BINARY,
    CLOSE,
    CONTINUATION,
    MAX_HEAD,
    PING,
    PONG,
    TEXT,
    accept_problem,
    close_payload,
    dechunk,
    frame,
    parse_head,
    split_frames,
)

__all__ = ["ConnectionClosed", "HandshakeError", "LoadConnection"]

OnMessage = Callable[[str | bytes, int], object]


class HandshakeError(RealtimeError):
    """The server answered the opening handshake with something but 101.

    Attributes:
        status: The HTTP status code (0 if the answer was not HTTP).
        body: The body of the answer, as far as it arrived.
    """

    def __init__(self, status: int, body: bytes = b"", detail: str = "") -> None:
        message = detail or f"Expected HTTP status 101, got {status}."
        if body:
            message = f"{message} Body: {body[:200]!r}"
        super().__init__(message)
        self.status = status
        self.body = body


class ConnectionClosed(RealtimeError):
    """The connection is closed.

    Attributes:
        code: The close code the server sent; 1005 if its close frame had
            none, 1006 if the TCP connection ended without a close frame.
        reason: The close reason, or what ended the connection.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"Connection closed with code {code}: {reason!r}.")
        self.code = code
        self.reason = reason


class LoadConnection(asyncio.Protocol):
    """One client WebSocket connection; made by :func:`connect`.

    Attributes:
        on_message: ``None`` to queue messages for :meth:`recv`, or a
            callable ``callback(data, now_ns)`` called for each message as
            it is read off the socket, with ``time.monotonic_ns()`` at that
            moment (a system-wide clock on Linux, so comparable with stamps
            taken by other processes).
        received: How many messages arrived so far (queued or called back).
        close_code: ``None`` while open; then the code of the server's close
            frame (1005 if it had none, 1006 if there was none).
        close_reason: The reason that goes with :attr:`close_code`.
        local_address: The ``(host, port)`` the connection is bound to.
    """

    __slots__ = (
        "_buffer",
        "_close_sent",
        "_close_timeout",
        "_closer",
        "_drain",
        "_fragment_kind",
        "_fragments",
        "_handshake",
        "_key",
        "_lost",
        "_queue",
        "_request",
        "_response",
        "_waiter",
        "close_code",
        "close_reason",
        "local_address",
        "on_message",
        "received",
        "transport",
    )

    def __init__(self, request: bytes, key: bytes, loop: asyncio.AbstractEventLoop):
        self._request = request
        self._key = key
        self._buffer = bytearray()
        self._handshake: asyncio.Future[None] | None = loop.create_future()
        self._response: tuple[int, dict[str, str]] | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        self._queue: collections.deque[str | bytes] = collections.deque()
        self._waiter: asyncio.Future[str | bytes] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._fragment_kind = 0
        self._close_sent = False
        self._close_timeout = 5.0
        self._closer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.on_message: OnMessage | None = None
        self.received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.local_address: tuple[str, int] = ("", 0)

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        host, port = self.local_address
        return f"<LoadConnection {host}:{port} {state}, {self.received} received>"

    # -- the public API -------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send ``text`` in one text frame.

        Raises:
            ConnectionClosed: The connection is closed or closing.
        """
        await self._send(TEXT, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        """Send ``data`` in one binary frame.

        Raises:
            ConnectionClosed: The connection is closed or closing.
        """
        await self._send(BINARY, data)

    async def recv(self) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Messages that arrived before the connection closed are returned
        first.

        Raises:
            ConnectionClosed: No message is left and the connection closed.
            RuntimeError: Another ``recv()`` is waiting, or
                :attr:`on_message` is set.
        """
        if self._queue:
            return self._queue.popleft()
        if self.close_code is not None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        if self.on_message is not None:
            raise RuntimeError("recv() cannot be used while on_message is set.")
        if self._waiter is not None:
            raise RuntimeError("Expected one recv() at a time, got a second one.")
        waiter: asyncio.Future[str | bytes] = self._lost.get_loop().create_future()
        self._waiter = waiter
        try:
            return await waiter
        except asyncio.CancelledError:
            # The message may have arrived just as the caller gave up.
            if waiter.done() and not waiter.cancelled() and not waiter.exception():
                self._queue.appendleft(waiter.result())
            raise
        finally:
            self._waiter = None

    async def close(
        self, code: int = 1000, reason: str = "", timeout: float = 5.0
    ) -> None:
        """Run the closing handshake; drop the connection if it takes too long.

        Waits up to ``timeout`` seconds for the server to answer the close
        frame and end the TCP connection.
        """
        if self.transport is None:
            return
        if not self._close_sent and self.close_code is None:
            self._close_sent = True
            self.transport.write(frame(CLOSE, close_payload(code, reason)))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self.abort()

    async def wait_closed(self) -> None:
        """Return once the TCP connection has ended."""
        await asyncio.shield(self._lost)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.local_address = transport.get_extra_info("sockname")[:2]
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
            self.close_reason = str(exc) if exc else "TCP connection ended"
        if self._closer is not None:
            self._closer.cancel()
        if self._handshake is not None and not self._handshake.done():
            if self._response is not None:
                status, _ = self._response
                self._handshake.set_exception(
                    HandshakeError(status, bytes(self._buffer))
                )
            else:
                self._handshake.set_exception(
                    ConnectionResetError(
                        f"Expected an HTTP answer to the upgrade request, got the "
                        f"connection closed ({self.close_reason})."
                    )
                )
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed(self.close_code, self.close_reason))
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._lost.get_loop().create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.close_code is not None:
            return
        if self._handshake is not None:
            self._buffer += data
            self._read_response()
            return
        if self._buffer:
            self._buffer += data
            self._read_frames(self._buffer)
        else:
            self._read_frames(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    # -- internals --------------------------------------------------------------

    async def _send(self, opcode: int, payload: bytes) -> None:
        if self._close_sent or self.close_code is not None or self.transport is None:
            raise ConnectionClosed(
                self.close_code or 1006, self.close_reason or "closing"
            )
        self.transport.write(frame(opcode, payload))
        if self._drain is not None:
            await self._drain

    def _read_response(self) -> None:
        assert self._handshake is not None
        buffer = self._buffer
        if self._response is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    self._fail_handshake(0, "The HTTP answer's head is too long.")
                return
            parsed = parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            if isinstance(parsed, str):
                self._fail_handshake(0, parsed)
                return
            self._response = parsed
        status, headers = self._response
        if status == 101:
            self._accept(headers)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and len(buffer) >= int(length):
            self._fail_handshake(status, body=bytes(buffer[: int(length)]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = dechunk(buffer)
            if body is not None:
                self._fail_handshake(status, body=body)
        # Otherwise the body ends with the connection: see connection_lost().

    def _accept(self, headers: dict[str, str]) -> None:
        assert self._handshake is not None
        problem = accept_problem(headers, self._key)
        if problem is not None:
            self._fail_handshake(101, problem)
            return
        handshake, self._handshake = self._handshake, None
        handshake.set_result(None)
        rest = bytes(self._buffer)
        self._buffer.clear()
        if rest:
            self._read_frames(rest)

    def _fail_handshake(self, status: int, detail: str = "", body: bytes = b"") -> None:
        assert self._handshake is not None
        assert self.transport is not None
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(status, body, detail))
        self.transport.abort()

    def _read_frames(self, data: bytes | bytearray) -> None:
        frames, pos, problem = split_frames(data)
        view = memoryview(data)
        try:
            for fin, opcode, start, stop in frames:
                kind = self._fragment_kind
                if opcode == TEXT and fin and not kind:
                    self._deliver(str(view[start:stop], "utf-8"))
                elif opcode == BINARY and fin and not kind:
                    self._deliver(view[start:stop].tobytes())
                elif opcode >= CLOSE:
                    self._control(opcode, view[start:stop].tobytes())
                    if self.close_code is not None:
                        return
                elif opcode in (TEXT, BINARY) and not kind:
                    self._fragment_kind = opcode
                    self._fragments.append(view[start:stop].tobytes())
                elif opcode == CONTINUATION and kind:
                    self._fragments.append(view[start:stop].tobytes())
                    if fin:
                        self._reassemble()
                else:
                    self._fail(1002, f"Unexpected frame opcode {opcode} here.")
                    return
        except UnicodeDecodeError:
            self._fail(1007, "Expected UTF-8 in a text message.")
            return
        finally:
            view.release()
        if problem is not None:
            self._fail(1002, problem)
            return
        if data is self._buffer:
            if pos:
                del self._buffer[:pos]
        elif pos < len(data):
            self._buffer += data[pos:]

    def _reassemble(self) -> None:
        payload = b"".join(self._fragments)
        kind = self._fragment_kind
        self._fragments = []
        self._fragment_kind = 0
        self._deliver(payload.decode() if kind == TEXT else payload)

    def _deliver(self, data: str | bytes) -> None:
        self.received += 1
        callback = self.on_message
        if callback is not None:
            callback(data, time.monotonic_ns())
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(data)
        else:
            self._queue.append(data)

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == PING:
            if not self._close_sent:
                self.transport.write(frame(PONG, payload))
        elif opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close_code = code
            self.close_reason = payload[2:].decode(errors="replace")
            if not self._close_sent:
                self._close_sent = True
                echo = payload[:2]
                self.transport.write(frame(CLOSE, echo))
            # The server ends the TCP connection; do not wait for ever.
            loop = self._lost.get_loop()
            self._closer = loop.call_later(self._close_timeout, self.transport.abort)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionClosed(code, self.close_reason))

    def _fail(self, code: int, reason: str) -> None:
        assert self.transport is not None
        if not self._close_sent:
            self._close_sent = True
            self.transport.write(frame(CLOSE, close_payload(code, reason)))
        self.close_code = code
        self.close_reason = reason
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed(code, reason))
        self.transport.close()
