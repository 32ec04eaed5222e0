"""The c10k client's wire format, without sockets: frames, heads, bodies."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from example_project.c10k.client.wire import (
    CLOSE,
    PING,
    TEXT,
    accept_problem,
    close_payload,
    dechunk,
    frame,
    mask,
    parse_head,
    request,
    split_frames,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(
    hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
).decode()


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65_536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def test_masking_twice_with_the_same_key_gives_the_payload_back() -> None:
    payload = bytes(range(256)) * 3 + b"odd"

    assert mask(mask(payload, b"\x01\x02\x03\x04"), b"\x01\x02\x03\x04") == payload
    assert mask(b"", b"abcd") == b""


@pytest.mark.parametrize(("size", "header"), [(125, 2), (126, 4), (65_536, 10)])
def test_client_frames_are_final_masked_and_sized_by_length(
    size: int, header: int
) -> None:
    payload = b"y" * size

    data = frame(TEXT, payload, key=b"abcd")

    assert data[0] == 0x80 | TEXT
    assert data[1] & 0x80
    assert data[header : header + 4] == b"abcd"
    assert mask(data[header + 4 :], b"abcd") == payload


def test_split_frames_returns_whole_frames_and_where_the_partial_one_starts() -> None:
    first, second = server_frame(TEXT, b"hello"), server_frame(TEXT, b"x" * 300)
    data = first + second[:-1]

    frames, pos, problem = split_frames(data)

    assert frames == [(True, TEXT, 2, 7)]
    assert pos == len(first)
    assert problem is None


def test_split_frames_reads_64_bit_lengths() -> None:
    data = server_frame(TEXT, b"z" * 70_000)

    frames, pos, problem = split_frames(data)

    assert frames == [(True, TEXT, 10, 70_010)]
    assert (pos, problem) == (len(data), None)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (bytes((0x81, 0x81)) + b"abcd" + b"x", "unmasked"),
        (bytes((0xC1, 1)) + b"x", "RSV"),
        (server_frame(PING, b"p", fin=False), "control frame"),
        (server_frame(CLOSE, b"c" * 126), "control frame"),
    ],
)
def test_split_frames_stops_at_a_frame_a_client_must_refuse(
    bad: bytes, says: str
) -> None:
    good = server_frame(TEXT, b"ok")

    frames, pos, problem = split_frames(good + bad)

    assert frames == [(True, TEXT, 2, 4)]
    assert pos == len(good)
    assert problem is not None
    assert says in problem


def test_close_payload_is_the_code_then_the_reason() -> None:
    assert close_payload(4008, "slow") == b"\x0f\xa8slow"


def test_request_carries_the_upgrade_origin_and_extra_headers() -> None:
    text = request("/ws/?a=1", "h:1", KEY, "http://o", {"Cookie": "s=1"}).decode()

    assert text.startswith("GET /ws/?a=1 HTTP/1.1\r\nHost: h:1\r\n")
    assert f"Sec-WebSocket-Key: {KEY.decode()}\r\n" in text
    assert "Origin: http://o\r\nCookie: s=1\r\n\r\n" in text


def test_parse_head_lowers_names_and_joins_repeated_headers() -> None:
    head = b"HTTP/1.1 403 Forbidden\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0"

    assert parse_head(head) == (403, {"x-a": "1, 2", "content-length": "0"})


def test_parse_head_says_what_is_wrong_with_a_status_line() -> None:
    problem = parse_head(b"SSH-2.0-OpenSSH\r\n")

    assert problem == "Expected an HTTP status line, got 'SSH-2.0-OpenSSH'."


def test_accept_problem_checks_upgrade_connection_and_the_accept_value() -> None:
    good = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-accept": ACCEPT,
    }

    assert accept_problem(good, KEY) is None
    assert "Upgrade: websocket" in str(accept_problem({**good, "upgrade": "h2"}, KEY))
    assert "Connection" in str(accept_problem({**good, "connection": "close"}, KEY))
    wrong = accept_problem({**good, "sec-websocket-accept": "x"}, KEY)
    assert wrong == f"Expected Sec-WebSocket-Accept {ACCEPT!r}, got 'x'."


def test_dechunk_waits_for_the_last_chunk() -> None:
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"

    assert dechunk(body) == b"hello world"
    assert dechunk(body[:12]) is None
    assert dechunk(b"5\r\nhel") is None
