"""A minimal, fast asyncio WebSocket client for load tests and benchmarks.

One :class:`LoadConnection` is one :class:`asyncio.Protocol` speaking RFC 6455
over a plain TCP transport: no task per connection or per message, no
extension, no payload copy beyond what framing needs. Client frames are
masked (the mask is applied as one integer XOR over the whole payload).
It trusts the peer the way a load client can: messages have no size limit
and are queued until read unless :attr:`LoadConnection.on_message` is set.

::

    src = SourceAddresses()
    conn = await connect("ws://127.0.0.1:8000/ws/echo/", local_addr=src.next())
    await conn.send_text("hello")
    assert await conn.recv() == "hello"
    await conn.close()

Failures::

    RealtimeError
    ├── HandshakeError      the server answered the upgrade with another status
    └── ConnectionClosed    recv() or a send on a connection that has closed

Socket failures surface as :class:`OSError`, a handshake that takes too long
as :class:`TimeoutError`.
"""

# The timeout parameters are part of the agreed API (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import ipaddress
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django_realtime.exceptions import RealtimeError

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "LoadConnection",
    "SourceAddresses",
    "connect",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 65_536
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0, 1, 2, 8, 9, 10
# Linux: choose the source port at connect() time, from the whole 4-tuple,
# rather than at bind() time; a bound source address then does not limit
# the connections to one per ephemeral port across all destinations.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

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


class SourceAddresses:
    """Hand out loopback source addresses for many connections to one server.

    A client can open at most as many connections to one server address as
    there are ephemeral ports on one source address; spreading connections
    over 127.0.0.1, 127.0.0.2, ... lifts that limit (every address in
    127.0.0.0/8 is the loopback interface on Linux).

    Args:
        hosts: The source hosts to use in turn; ``None`` means 127.0.0.1 to
            127.0.0.254, as many as needed.
        per_host: How many connections to bind to a host before moving to
            the next. After the last host, the first is used again.
    """

    def __init__(self, hosts: Iterable[str] | None = None, per_host: int = 25_000):
        if per_host < 1:
            raise ValueError(f"Expected per_host >= 1, got {per_host}.")
        self.hosts = (
            [f"127.0.0.{last}" for last in range(1, 255)]
            if hosts is None
            else list(hosts)
        )
        if not self.hosts:
            raise ValueError("Expected at least one source host, got none.")
        self.per_host = per_host
        self.count = 0

    def next(self) -> tuple[str, int]:
        """Return the ``(host, 0)`` ``local_addr`` of the next connection."""
        index = self.count // self.per_host % len(self.hosts)
        self.count += 1
        return (self.hosts[index], 0)


def _mask(payload: bytes, key: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    repeated = key * (size >> 2) + key[: size & 3]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(size, "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    """Return one final, masked client frame."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65_536:
        header = struct.pack("!BBH", first, 0xFE, size)
    else:
        header = struct.pack("!BBQ", first, 0xFF, size)
    key = random.getrandbits(32).to_bytes(4, "big")
    return header + key + _mask(payload, key)


def _close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode()


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
        await self._send(_TEXT, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        """Send ``data`` in one binary frame.

        Raises:
            ConnectionClosed: The connection is closed or closing.
        """
        await self._send(_BINARY, data)

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
            self.transport.write(_frame(_CLOSE, _close_payload(code, reason)))
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
        self.transport.write(_frame(opcode, payload))
        if self._drain is not None:
            await self._drain

    def _read_response(self) -> None:
        assert self._handshake is not None
        buffer = self._buffer
        if self._response is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._fail_handshake(0, "The HTTP answer's head is too long.")
                return
            head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            parts = head[0].split(" ", 2)
            if (
                len(parts) < 2
                or not parts[0].startswith("HTTP/")
                or not parts[1].isdigit()
            ):
                self._fail_handshake(
                    0, f"Expected an HTTP status line, got {head[0]!r}."
                )
                return
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = (
                    f"{headers[name]}, {value}" if name in headers else value
                )
            self._response = (int(parts[1]), headers)
        status, headers = self._response
        if status == 101:
            self._accept(headers)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and len(buffer) >= int(length):
            self._fail_handshake(status, body=bytes(buffer[: int(length)]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = _dechunk(buffer)
            if body is not None:
                self._fail_handshake(status, body=body)
        # Otherwise the body ends with the connection: see connection_lost().

    def _accept(self, headers: dict[str, str]) -> None:
        assert self._handshake is not None
        assert self.transport is not None
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("upgrade", "").lower() != "websocket":
            detail = f"Expected 'Upgrade: websocket', got {headers.get('upgrade')!r}."
        elif "upgrade" not in headers.get("connection", "").lower():
            detail = (
                f"Expected 'Connection: upgrade', got {headers.get('connection')!r}."
            )
        elif headers.get("sec-websocket-accept") != expected:
            detail = (
                f"Expected Sec-WebSocket-Accept {expected!r}, "
                f"got {headers.get('sec-websocket-accept')!r}."
            )
        else:
            handshake, self._handshake = self._handshake, None
            handshake.set_result(None)
            rest = bytes(self._buffer)
            self._buffer.clear()
            if rest:
                self._read_frames(rest)
            return
        self._fail_handshake(101, detail)

    def _fail_handshake(self, status: int, detail: str = "", body: bytes = b"") -> None:
        assert self._handshake is not None
        assert self.transport is not None
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(status, body, detail))
        self.transport.abort()

    def _read_frames(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        end = len(data)
        pos = 0
        try:
            while end - pos >= 2:
                first, second = data[pos], data[pos + 1]
                size = second & 0x7F
                start = pos + 2
                if size == 126:
                    if end - pos < 4:
                        break
                    size = (data[pos + 2] << 8) | data[pos + 3]
                    start = pos + 4
                elif size == 127:
                    if end - pos < 10:
                        break
                    (size,) = struct.unpack_from("!Q", data, pos + 2)
                    start = pos + 10
                stop = start + size
                if stop > end:
                    break
                pos = stop
                if second & 0x80 or first & 0x70:
                    self._fail(1002, "Expected unmasked frames without RSV bits.")
                    return
                opcode = first & 0x0F
                fin = first & 0x80
                kind = self._fragment_kind
                if opcode == _TEXT and fin and not kind:
                    self._deliver(str(view[start:stop], "utf-8"))
                elif opcode == _BINARY and fin and not kind:
                    self._deliver(view[start:stop].tobytes())
                elif opcode >= _CLOSE:
                    if not fin or size > 125:
                        self._fail(
                            1002, "Expected a final control frame of <126 bytes."
                        )
                        return
                    self._control(opcode, view[start:stop].tobytes())
                    if self.close_code is not None:
                        return
                elif opcode in (_TEXT, _BINARY) and not kind:
                    self._fragment_kind = opcode
                    self._fragments.append(view[start:stop].tobytes())
                elif opcode == _CONTINUATION and kind:
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
        if data is self._buffer:
            if pos:
                del self._buffer[:pos]
        elif pos < end:
            self._buffer += data[pos:]

    def _reassemble(self) -> None:
        payload = b"".join(self._fragments)
        kind = self._fragment_kind
        self._fragments = []
        self._fragment_kind = 0
        self._deliver(payload.decode() if kind == _TEXT else payload)

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
        if opcode == _PING:
            if not self._close_sent:
                self.transport.write(_frame(_PONG, payload))
        elif opcode == _CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close_code = code
            self.close_reason = payload[2:].decode(errors="replace")
            if not self._close_sent:
                self._close_sent = True
                echo = payload[:2]
                self.transport.write(_frame(_CLOSE, echo))
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
            self.transport.write(_frame(_CLOSE, _close_payload(code, reason)))
        self.close_code = code
        self.close_reason = reason
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionClosed(code, reason))
        self.transport.close()


def _dechunk(buffer: bytearray) -> bytes | None:
    """Return a complete chunked body, or ``None`` while it is incomplete."""
    body = bytearray()
    pos = 0
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(body)
        start = line_end + 2
        if len(buffer) < start + size + 2:
            return None
        body += buffer[start : start + size]
        pos = start + size + 2


def _request(
    path: str,
    netloc: str,
    key: bytes,
    origin: str | None,
    headers: Mapping[str, str] | None,
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _bound_socket(
    loop: asyncio.AbstractEventLoop, host: str, port: int, local_addr: tuple[str, int]
) -> socket.socket:
    try:
        ipaddress.ip_address(host)
        address: tuple[Any, ...] = (host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind(local_addr)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    origin: str | None = None,
    local_addr: tuple[str, int] | None = None,
    timeout: float = 10.0,
) -> LoadConnection:
    """Open a WebSocket connection to ``url`` and return it once accepted.

    Args:
        url: A ``ws://host:port/path?query`` URL.
        headers: Extra request headers, e.g. ``{"Cookie": "sessionid=..."}``.
        origin: The ``Origin`` header, if any.
        local_addr: The ``(host, port)`` to bind to, e.g.
            :meth:`SourceAddresses.next`; ``None`` lets the system choose.
        timeout: Seconds for the TCP connection and the server's 101 answer.

    Raises:
        HandshakeError: The server answered with another HTTP status.
        OSError: The TCP connection failed.
        TimeoutError: The handshake took longer than ``timeout``.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"Expected a ws://host[:port]/path URL, got {url!r}.")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    loop = asyncio.get_running_loop()
    connection = LoadConnection(
        _request(path, parts.netloc, key, origin, headers), key, loop
    )
    try:
        async with asyncio.timeout(timeout):
            if local_addr is None:
                await loop.create_connection(lambda: connection, host, port)
            else:
                sock = await _bound_socket(loop, host, port, local_addr)
                try:
                    await loop.create_connection(lambda: connection, sock=sock)
                except BaseException:
                    sock.close()
                    raise
            assert connection._handshake is not None
            await connection._handshake
    except BaseException:
        # Nobody will await the handshake now: settle it, so that a later
        # connection_lost does not leave an exception nobody retrieves.
        if connection._handshake is not None and not connection._handshake.done():
            connection._handshake.cancel()
        connection.abort()
        raise
    return connection
