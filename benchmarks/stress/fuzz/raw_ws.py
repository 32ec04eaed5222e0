"""A WebSocket client that writes frames by hand, for benchmarks.stress.fuzz.

Client libraries refuse to send what a hostile client sends (invalid UTF-8
in a text frame, reserved bits, a 2^63-byte length, a fragmented ping), so
this one builds every frame from its fields and reads the server's frames
with no checks beyond what it needs to report them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from dataclasses import dataclass

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "RawConnection",
    "ServerFrame",
    "frame",
    "open_raw",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    size = len(payload)
    keystream = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")
    return masked.to_bytes(size, "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    key: bytes | None = None,
) -> bytes:
    """Return the bytes of one client frame, valid or not.

    Args:
        opcode: The 4-bit opcode, reserved ones included.
        payload: The payload, before masking.
        fin: The FIN bit.
        rsv: The three RSV bits, as a number from 0 to 7.
        masked: Mask the payload, as clients must.
        length: The length to announce, if not the payload's.
        key: The masking key (random if ``None``).
    """
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = bytes([first, mask_bit | size])
    elif size < 1 << 16:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", size)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return header + payload
    key = os.urandom(4) if key is None else key
    return header + key + _mask(payload, key)


def close_payload(code: int | None, reason: bytes = b"") -> bytes:
    """Return a close frame's payload: a 2-byte code and a reason."""
    return b"" if code is None else struct.pack("!H", code) + reason


@dataclass(frozen=True, slots=True)
class ServerFrame:
    """One frame from the server."""

    opcode: int
    fin: bool
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """Return the close code of a close frame (``None`` if it has none)."""
        if len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


class RawConnection:
    """One TCP connection to the server, past or in its handshake."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status: int | None = None

    async def handshake(
        self, host: str, port: int, path: str, extra: str = "", request: str = ""
    ) -> int | None:
        """Send a handshake (``request`` replaces the standard one); return the status.

        ``None`` means the server closed the connection without answering.
        """
        if not request:
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://{host}:{port}\r\n{extra}\r\n"
            )
        self.writer.write(request.encode("latin-1"))
        await self.writer.drain()
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        parts = head.split(b" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return self.status

    async def send(self, data: bytes) -> bool:
        """Write raw bytes; return ``False`` if the server has gone."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def read_frame(self) -> ServerFrame:
        """Read one frame from the server.

        Raises:
            asyncio.IncompleteReadError: The connection ended.
        """
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        key = await self.reader.readexactly(4) if second & 0x80 else b""
        payload = await self.reader.readexactly(size)
        if key:
            payload = _mask(payload, key)
        return ServerFrame(first & 0x0F, bool(first & 0x80), payload)

    def abort(self) -> None:
        """Reset the connection (RST, not FIN): SO_LINGER with a zero timeout."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the TCP connection, whatever state it is in."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def open_raw(port: int, host: str = "127.0.0.1") -> RawConnection:
    """Open a TCP connection to the server, with no handshake yet."""
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
    return RawConnection(reader, writer)
