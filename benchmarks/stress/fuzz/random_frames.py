"""The random cases of benchmarks.stress.fuzz, drawn from a seeded generator.

Random frames (any opcode, RSV bits, masking, lengths, payloads of bytes,
text or JSON), random stream-protocol frames (valid ones, slightly wrong
ones, and JSON that is no frame at all) on one connection, each of which
must get its answer, and random text to the stream consumer.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

from benchmarks.stress.fuzz.client import (
    Case,
    Context,
    concurrently,
    ours,
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
    frame,
    open_raw,
)

__all__ = ["CASES", "random_frame", "random_json", "stream_frame"]

CASES: list[Case] = []
case = registrar(CASES)


def random_frame(rng: random.Random) -> bytes:
    """Return a frame with random fields, mostly almost valid."""
    opcode = rng.choice(
        [TEXT, BINARY, CONTINUATION, PING, PONG, CLOSE, rng.randrange(16)]
    )
    kind = rng.random()
    if kind < 0.3:
        payload = rng.randbytes(rng.randrange(0, 200))
    elif kind < 0.6:
        payload = "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFFF)]))
            for _ in range(rng.randrange(0, 60))
        ).encode("utf-8", "surrogatepass")
    else:
        payload = json.dumps(random_json(rng, 3)).encode()
    return frame(
        opcode,
        payload,
        fin=rng.random() < 0.85,
        rsv=0 if rng.random() < 0.85 else rng.randrange(1, 8),
        masked=rng.random() < 0.95,
        length=None if rng.random() < 0.95 else rng.randrange(0, 1 << 20),
    )


@case("random frames", None)
async def random_frames(ctx: Context) -> list[str]:
    # Incomplete frames leave the server waiting: a short timeout, in parallel.
    paths = ("/ws/plain/", "/ws/json/", "/ws/streams/")
    tries = [
        (
            paths[i % 3],
            [random_frame(ctx.rng) for _ in range(ctx.rng.randrange(1, 4))],
        )
        for i in range(ctx.count)
    ]
    return await concurrently(ctx, tries, min(ctx.timeout, 1.0))


def random_json(rng: random.Random, depth: int) -> Any:
    """Return a random JSON value, nested at most ``depth`` deep."""
    pick = rng.randrange(8 if depth > 0 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, -1, 1 << 70, rng.randrange(-(10**9), 10**9)])
    if pick == 3:
        return rng.choice([0.5, -1e308, 1e-300])
    if pick in (4, 5):
        return rng.choice(["", "fuzz.1", "a b", "é", "\u0000", "x" * 300, "echo"])
    if pick == 6:
        return [random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["kind", "id", "stream", "since", "type", "data", "x"]): (
            random_json(rng, depth - 1)
        )
        for _ in range(rng.randrange(4))
    }


def stream_frame(rng: random.Random, frame_id: int) -> Any:
    """Return a stream-protocol frame: valid, slightly wrong, or not a frame."""
    if rng.random() < 0.1:
        return random_json(rng, 3)
    content: dict[str, Any] = {}
    kind = rng.choice(["subscribe", "unsubscribe", "request", "ping", "dance", None, 7])
    if kind is not None:
        content["kind"] = kind
    content["id"] = (
        frame_id
        if rng.random() < 0.8
        else rng.choice([True, "1", None, 1.5, 1 << 70, -5])
    )
    if kind in ("subscribe", "unsubscribe") or rng.random() < 0.1:
        content["stream"] = rng.choice(
            [
                f"fuzz.{rng.randrange(5)}",
                f"fuzz.{rng.randrange(5)}",
                "private.x",
                "a b",
                "x" * 201,
                5,
                "",
                "fuzz.é",
            ]
        )
    if kind == "subscribe" and rng.random() < 0.5:
        content["since"] = rng.choice(
            [
                {"epoch": "e", "offset": rng.randrange(-3, 10)},
                {"epoch": 1, "offset": 1},
                {"offset": 2},
                [],
                "since",
                {"epoch": "", "offset": 1 << 70},
            ]
        )
    if kind == "request" or rng.random() < 0.1:
        content["type"] = rng.choice(
            ["echo", "echo", "fail", "no.such", "_private", "a..b", "", 3, "Echo"]
        )
        content["data"] = random_json(rng, 4)
    if rng.random() < 0.1:
        content[rng.choice(["extra", "kind2", ""])] = random_json(rng, 2)
    return content


@case(
    "random stream-protocol frames on one connection",
    same("answered all"),
    **{
        "unanswered: subscribe": "streams/consumer.py: a subscribe followed by "
        "an unsubscribe of the same stream before the pump started it gets no "
        "answer (_Pump._start returns), though the protocol answers every "
        "frame exactly once"
    },
)
async def random_stream_frames(ctx: Context) -> list[str]:
    """Send ``count`` frames; every one must get its answer, the socket stay open."""
    conn = await open_raw(ctx.port)
    try:
        status = await conn.handshake("127.0.0.1", ctx.port, "/ws/streams/")
        if status != 101:
            return [f"http {status}"]
        contents = [stream_frame(ctx.rng, i) for i in range(ctx.count)]
        # Frames that carry their own id (unique): which of them are answered.
        tracked = {
            i: str(content.get("kind"))
            for i, content in enumerate(contents)
            if type(content) is dict
            and type(content.get("id")) is int
            and content["id"] == i
        }
        payloads = b"".join(frame(TEXT, json.dumps(c).encode()) for c in contents)
        await conn.send(payloads + frame(TEXT, b'{"kind": "ping", "id": -1}'))
        answers = 0
        answered: set[Any] = set()
        ponged = False
        deadline = time.monotonic() + ctx.timeout + ctx.count / 100
        while True:
            # Answers from the stream pump (subscribed, unsubscribed) may
            # follow the final pong: read on until the socket is quiet.
            wait = 0.3 if ponged else deadline - time.monotonic()
            try:
                got = await asyncio.wait_for(conn.read_frame(), max(wait, 0))
            except TimeoutError:
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                return [f"dropped after {answers}/{ctx.count} answers"]
            if got.opcode == CLOSE:
                return [f"close {got.close_code} after {answers}/{ctx.count} answers"]
            if got.opcode != TEXT:
                continue
            answer = json.loads(got.payload)
            if answer.get("kind") == "pong" and answer.get("id") == -1:
                ponged = True
                continue
            answers += 1
            answered.add(answer.get("id"))
        if not ponged:
            return [f"open, no pong, answered {answers}/{ctx.count}"]
        missing = Counter(kind for i, kind in tracked.items() if i not in answered)
        if missing:
            kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(missing.items()))
            return [f"unanswered: {kinds}"]
        if answers != ctx.count:
            return [f"answered {answers}/{ctx.count}"]
        return ["answered all"]
    finally:
        await conn.close()


@case("random text to the stream consumer", ours(1007, "reply"))
async def random_stream_text(ctx: Context) -> list[str]:
    # Random bytes made text: almost never JSON, so almost always 1007; the
    # rare number or string that is JSON gets an error frame.
    tries = []
    for _ in range(max(1, ctx.count // 10)):
        size = ctx.rng.randrange(1, 100)
        payload = ctx.rng.randbytes(size).decode("utf-8", "replace")
        tries.append(("/ws/streams/", [text(payload)]))
    return await concurrently(ctx, tries, ctx.timeout)
