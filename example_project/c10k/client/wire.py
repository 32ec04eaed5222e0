"""What the ``testecho`` client puts on the wire and reads back: no I/O here.

The opening handshake (the upgrade request, the answer's head, the
``Sec-WebSocket-Accept`` check, a chunked refusal body) and the client's
frames (final and masked, RFC 6455 section 5). :mod:`example_project.c10k.client`
is the asyncio shell around them.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
from collections.abc import Mapping

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "MAX_HEAD",
    "PING",
    "PONG",
    "TEXT",
    "accept_problem",
    "close_payload",
    "dechunk",
    "frame",
    "mask",
    "parse_head",
    "request",
    "split_frames",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The longest answer head the client reads before giving up.
MAX_HEAD = 65_536
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10


def mask(payload: bytes, key: bytes) -> bytes:
    """Return ``payload`` masked with the 4-byte ``key`` (one integer XOR)."""
    size = len(payload)
    if not size:
        return b""
    repeated = key * (size >> 2) + key[: size & 3]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(size, "big")


def frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """Return one final, masked client frame; a random mask unless ``key``."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65_536:
        header = struct.pack("!BBH", first, 0xFE, size)
    else:
        header = struct.pack("!BBQ", first, 0xFF, size)
    if key is None:
        key = random.getrandbits(32).to_bytes(4, "big")
    return header + key + mask(payload, key)


def close_payload(code: int, reason: str) -> bytes:
    """Return the payload of a close frame: the code, then the UTF-8 reason."""
    return struct.pack("!H", code) + reason.encode()


def request(
    path: str,
    netloc: str,
    key: bytes,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """Return the HTTP/1.1 upgrade request for ``path`` on ``netloc``."""
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


def parse_head(head: bytes) -> tuple[int, dict[str, str]] | str:
    """Return ``(status, headers)`` of an answer's head, or what is wrong with it.

    ``head`` is everything before the blank line. Header names are lower
    case; repeated headers are joined with ``", "``.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return f"Expected an HTTP status line, got {lines[0]!r}."
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(parts[1]), headers


def accept_problem(headers: Mapping[str, str], key: bytes) -> str | None:
    """Return why a 101 answer does not accept the upgrade, or ``None``."""
    expected = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    if headers.get("upgrade", "").lower() != "websocket":
        return f"Expected 'Upgrade: websocket', got {headers.get('upgrade')!r}."
    if "upgrade" not in headers.get("connection", "").lower():
        return f"Expected 'Connection: upgrade', got {headers.get('connection')!r}."
    if headers.get("sec-websocket-accept") != expected:
        return (
            f"Expected Sec-WebSocket-Accept {expected!r}, "
            f"got {headers.get('sec-websocket-accept')!r}."
        )
    return None


def dechunk(buffer: bytes | bytearray) -> bytes | None:
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


def split_frames(
    data: bytes | bytearray,
) -> tuple[list[tuple[bool, int, int, int]], int, str | None]:
    """Return the complete server frames in ``data``, where the rest begins, a problem.

    Each frame is ``(fin, opcode, start, stop)``, its payload
    ``data[start:stop]``. Reading stops at the first incomplete frame, or at
    the first frame a client must refuse (masked, RSV bits set, a control
    frame fragmented or over 125 bytes); ``problem`` then says which, and
    the frames before it are returned.
    """
    frames: list[tuple[bool, int, int, int]] = []
    end = len(data)
    pos = 0
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
        if second & 0x80 or first & 0x70:
            return frames, pos, "Expected unmasked frames without RSV bits."
        opcode = first & 0x0F
        fin = bool(first & 0x80)
        if opcode >= CLOSE and (not fin or size > 125):
            return frames, pos, "Expected a final control frame of <126 bytes."
        frames.append((fin, opcode, start, stop))
        pos = stop
    return frames, pos, None
