"""The fixed cases of benchmarks.stress.fuzz: one kind of hostile input each.

Frame-level violations the servers refuse themselves, sizes, fragments and
control frames, what the consumers refuse (binary frames to JSON, invalid
JSON, deep nesting), failing handlers and layer messages, invalid group
names, malformed handshakes and clients that vanish. The outcomes are
described in :mod:`benchmarks.stress.fuzz.client`.
"""

from __future__ import annotations

import json

from benchmarks.stress.fuzz.client import (
    DAPHNE_CHECKER,
    MIB,
    Case,
    Context,
    attack,
    handshake_outcome,
    ours,
    protocol_error,
    read_outcome,
    registrar,
    same,
    text,
)
from benchmarks.stress.fuzz.raw_ws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    close_payload,
    frame,
    open_raw,
)

__all__ = ["CASES"]

CASES: list[Case] = []
case = registrar(CASES)


# The server's own refusals: the frame level.

INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # an overlong "/"
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"ok\xe2\x82",  # truncated
]


@case("invalid UTF-8 in a text frame", protocol_error(1007))
async def invalid_utf8(ctx: Context) -> list[str]:
    return [
        await attack(ctx, path, [text(payload)])
        for path in ("/ws/plain/", "/ws/json/")
        for payload in INVALID_UTF8
    ]


@case("invalid UTF-8 split across two fragments", protocol_error(1007))
async def invalid_utf8_fragments(ctx: Context) -> list[str]:
    chunks = [
        frame(TEXT, b"ab\xe2", fin=False),
        frame(CONTINUATION, b"\x28\xa1"),
    ]
    return [await attack(ctx, "/ws/plain/", chunks)]


@case("RSV bits set with no extension agreed", protocol_error(1002))
async def reserved_bits(ctx: Context) -> list[str]:
    return [
        await attack(ctx, "/ws/plain/", [frame(TEXT, b"x", rsv=rsv)])
        for rsv in (1, 2, 4, 7)
    ]


@case("reserved opcodes", protocol_error(1002))
async def reserved_opcodes(ctx: Context) -> list[str]:
    return [
        await attack(ctx, "/ws/plain/", [frame(opcode, b"x")])
        for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
    ]


@case("an unmasked client frame", protocol_error(1002))
async def unmasked(ctx: Context) -> list[str]:
    return [await attack(ctx, "/ws/plain/", [frame(TEXT, b"hi", masked=False)])]


@case("a continuation frame with no message started", protocol_error(1002))
async def stray_continuation(ctx: Context) -> list[str]:
    return [await attack(ctx, "/ws/plain/", [frame(CONTINUATION, b"x")])]


@case("a new message inside a fragmented one", protocol_error(1002))
async def interleaved_message(ctx: Context) -> list[str]:
    chunks = [frame(TEXT, b"a", fin=False), frame(TEXT, b"b")]
    return [await attack(ctx, "/ws/plain/", chunks)]


@case("a ping over 125 bytes", protocol_error(1002))
async def long_ping(ctx: Context) -> list[str]:
    return [await attack(ctx, "/ws/plain/", [frame(PING, b"p" * 126)])]


@case("a fragmented ping", protocol_error(1002))
async def fragmented_ping(ctx: Context) -> list[str]:
    return [await attack(ctx, "/ws/plain/", [frame(PING, b"p", fin=False)])]


@case("a close frame with a 1-byte payload", protocol_error(1002))
async def short_close(ctx: Context) -> list[str]:
    return [await attack(ctx, "/ws/plain/", [frame(CLOSE, b"\x03")])]


@case("close frames with codes a client may not send", protocol_error(1002))
async def bad_close_codes(ctx: Context) -> list[str]:
    return [
        await attack(ctx, "/ws/plain/", [frame(CLOSE, close_payload(code))])
        for code in (0, 999, 1004, 1005, 1006, 1015, 2000, 5000)
    ]


@case("a close reason of invalid UTF-8", protocol_error(1007))
async def bad_close_reason(ctx: Context) -> list[str]:
    payload = close_payload(1000, b"\xff\xfe")
    return [await attack(ctx, "/ws/plain/", [frame(CLOSE, payload)])]


@case("a 64-bit length with its top bit set", protocol_error(1002))
async def negative_length(ctx: Context) -> list[str]:
    chunks = [frame(TEXT, b"", length=1 << 63, masked=False)]
    return [await attack(ctx, "/ws/plain/", chunks)]


@case("a frame announcing 2^62 bytes, never sent", protocol_error(1009))
async def announced_huge(ctx: Context) -> list[str]:
    header = frame(TEXT, b"", length=1 << 62, masked=False)
    # The mask bit and key, so that only the length is wrong.
    header = header[:1] + bytes([header[1] | 0x80]) + header[2:] + b"\0\0\0\0"
    return [await attack(ctx, path, [header]) for path in ("/ws/plain/", "/ws/json/")]


# uvicorn takes 16 MiB: the consumer's 1 MiB limit answers. daphne takes 1 MiB.
@case("a 2 MiB text frame", ours(1009) | {"daphne": frozenset({"dropped"})})
async def huge_frame(ctx: Context) -> list[str]:
    return [
        await attack(ctx, path, [text(b"x" * 2 * MIB)])
        for path in ("/ws/plain/", "/ws/json/")
    ]


@case(
    "a 1.5 MiB message in 64 KiB fragments",
    ours(1009) | {"daphne": frozenset({"dropped"})},
)
async def huge_fragmented(ctx: Context) -> list[str]:
    piece = b"y" * (64 * 1024)
    count = 24
    chunks = [frame(TEXT, piece, fin=False)]
    chunks += [frame(CONTINUATION, piece, fin=False) for _ in range(count - 2)]
    chunks.append(frame(CONTINUATION, piece))
    return [await attack(ctx, "/ws/plain/", chunks)]


@case("100 KiB to a consumer with max_message_size of 64 KiB", ours(1009))
async def over_consumer_limit(ctx: Context) -> list[str]:
    return [
        await attack(ctx, "/ws/small/", [text(b"z" * 100 * 1024)]),
        await attack(ctx, "/ws/small/", [frame(BINARY, b"z" * 100 * 1024)]),
    ]


@case("10,000 one-byte fragments", same("reply"))
async def tiny_fragments(ctx: Context) -> list[str]:
    count = 10_000
    chunks = [frame(TEXT, b"a", fin=False)]
    chunks += [frame(CONTINUATION, b"a", fin=False) for _ in range(count - 2)]
    chunks.append(frame(CONTINUATION, b"a"))
    return [await attack(ctx, "/ws/plain/", [b"".join(chunks)], until_reply=True)]


@case("a ping between two fragments", same("reply"))
async def ping_between_fragments(ctx: Context) -> list[str]:
    chunks = [
        frame(TEXT, b"hel", fin=False),
        frame(PING, b"in between"),
        frame(CONTINUATION, b"lo"),
    ]
    return [await attack(ctx, "/ws/plain/", chunks, until_reply=True)]


@case("1,000 pings, then a message", same("reply"))
async def ping_flood(ctx: Context) -> list[str]:
    pings = b"".join(frame(PING, str(i).encode()) for i in range(1000))
    return [await attack(ctx, "/ws/plain/", [pings, text("after")], until_reply=True)]


@case("unsolicited pongs, then a message", same("reply"))
async def unsolicited_pongs(ctx: Context) -> list[str]:
    pongs = b"".join(frame(PONG, b"unasked") for _ in range(100))
    return [await attack(ctx, "/ws/plain/", [pongs, text("after")], until_reply=True)]


# daphne sends nothing for an empty "text" or "bytes" (it tests truthiness).
@case(
    "empty text and binary frames",
    {"uvicorn": frozenset({"reply"}), "daphne": frozenset({"open"})},
)
async def empty_frames(ctx: Context) -> list[str]:
    return [
        await attack(ctx, "/ws/plain/", [frame(opcode, b"")], until_reply=True)
        for opcode in (TEXT, BINARY)
    ]


# The consumers' refusals.


@case("a binary frame to a JSON consumer", ours(1003))
async def binary_to_json(ctx: Context) -> list[str]:
    return [
        await attack(ctx, path, [frame(BINARY, b"\x00{}")])
        for path in ("/ws/json/", "/ws/json-sync/")
    ]


@case("invalid JSON", ours(1007))
async def invalid_json(ctx: Context) -> list[str]:
    payloads = ["{", "nope", "", "[1,]", '{"a" 1}', "'single'", "1" * 5000]
    return [
        await attack(ctx, path, [text(payload)])
        for path in ("/ws/json/", "/ws/json-sync/")
        for payload in payloads
    ]


@case("JSON nested 100,000 deep", ours(1009))
async def deep_json(ctx: Context) -> list[str]:
    deep = "[" * 100_000 + "]" * 100_000
    return [
        await attack(ctx, path, [text(deep)])
        for path in ("/ws/json/", "/ws/json-sync/", "/ws/streams/")
    ]


@case(
    "JSON the consumers take: NaN, a lone surrogate escape, huge floats", same("reply")
)
async def odd_json(ctx: Context) -> list[str]:
    payloads = ["NaN", '"\\ud800"', "1e999", "-0", '{"": null}', "[]"]
    return [
        await attack(ctx, "/ws/json/", [text(payload)], until_reply=True)
        for payload in payloads
    ]


@case("a handler that raises (KeyError on {})", same("close 1011"))
async def failing_handler(ctx: Context) -> list[str]:
    return [await attack(ctx, "/ws/fail/", [text("{}")], at_least=DAPHNE_CHECKER)]


@case(
    "layer messages with no handler, or naming a non-handler: skipped",
    same("reply"),
)
async def unknown_layer_types(ctx: Context) -> list[str]:
    kinds = [
        "no.such",
        "close",
        "_private",
        "websocket.connect",
        "websocket.disconnect",
    ]
    return [
        await attack(
            ctx,
            "/ws/unknown/",
            [text(json.dumps({"layer": kind}))],
            at_least=DAPHNE_CHECKER,
        )
        for kind in kinds
    ]


@case("a group name made invalid by the URL", same("http 500"))
async def invalid_group(ctx: Context) -> list[str]:
    rooms = ["bad%20room", "x" * 120, "%C3%A9t%C3%A9%0A", "a%00b"]
    return [
        await attack(ctx, f"/ws/room/{room}/", [], at_least=DAPHNE_CHECKER)
        for room in rooms
    ]


@case("a path no route matches", same("http 403"))
async def unrouted(ctx: Context) -> list[str]:
    paths = ["/nowhere/", "/ws/plain/extra/", "/%ff%fe/", "/ws/room//"]
    return [await attack(ctx, path, []) for path in paths]


# Races between the client's close and the consumer's answer.


@case(
    "a bad frame and a close frame in one write",
    same("close 1000"),
)
async def refusal_crossing_close(ctx: Context) -> list[str]:
    # The consumer refuses the frame after the server has answered the close:
    # its own close is refused too, and it logs one warning instead.
    chunks = [frame(BINARY, b"\x00") + frame(CLOSE, close_payload(1000))]
    return [await attack(ctx, path, chunks) for path in ("/ws/json/", "/ws/json-sync/")]


@case("a message and a close frame in one write", same("close 1000"))
async def echo_crossing_close(ctx: Context) -> list[str]:
    chunks = [frame(TEXT, b"echo me") + frame(CLOSE, close_payload(1000))]
    return [await attack(ctx, "/ws/plain/", chunks) for _ in range(3)]


# Handshakes.


@case(
    "malformed handshakes",
    {
        "uvicorn": frozenset(
            {"http 400", "http 404", "http 405", "http 426", "dropped"}
        ),
        # autobahn also speaks version 8 (draft hybi-10).
        "daphne": frozenset(
            {"http 101", "http 400", "http 404", "http 405", "dropped"}
        ),
    },
)
async def bad_handshakes(ctx: Context) -> list[str]:
    host = f"Host: 127.0.0.1:{ctx.port}\r\n"
    upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    requests = [
        f"GET /ws/plain/ HTTP/1.1\r\n{host}{upgrade}Sec-WebSocket-Version: 13\r\n\r\n",
        f"GET /ws/plain/ HTTP/1.1\r\n{host}{upgrade}{key}"
        "Sec-WebSocket-Version: 8\r\n\r\n",
        f"POST /ws/plain/ HTTP/1.1\r\n{host}{upgrade}{key}"
        "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
        "\x16\x03\x01\x02\x00garbage, not HTTP\r\n\r\n",
        f"GET /ws/plain/ HTTP/1.1\r\n{host}X-Big: {'b' * 70_000}\r\n\r\n",
    ]
    return [await handshake_outcome(ctx, request) for request in requests]


# Abrupt ends.


@case("the client vanishing: FIN or RST at every stage", same("hung up"))
async def abrupt_closes(ctx: Context) -> list[str]:
    outcomes = []
    message = frame(TEXT, b"x" * 1000)
    for stage in ("handshake", "header", "payload", "reset", "reset-mid-message"):
        conn = await open_raw(ctx.port)
        if stage == "handshake":
            await conn.send(b"GET /ws/plain/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg")
            await conn.close()
        else:
            await conn.handshake("127.0.0.1", ctx.port, "/ws/streams/")
            if stage == "header":
                await conn.send(message[:1])
            elif stage == "payload":
                await conn.send(message[:500])
            elif stage == "reset-mid-message":
                await conn.send(frame(TEXT, b"part", fin=False))
            if stage.startswith("reset"):
                conn.abort()
            else:
                await conn.close()
        outcomes.append("hung up")
    return outcomes


@case("a half-close (FIN) after the handshake", same("dropped", "close 1006"))
async def half_close(ctx: Context) -> list[str]:
    conn = await open_raw(ctx.port)
    try:
        await conn.handshake("127.0.0.1", ctx.port, "/ws/plain/")
        conn.writer.write_eof()
        return [await read_outcome(conn, ctx)]
    finally:
        await conn.close()
