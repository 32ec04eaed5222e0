"""How benchmarks.stress.fuzz talks to the server, and what a case is.

A case opens one or more connections to the live server, sends its input
and returns one outcome per try:

``close <code>``
    The server sent a close frame with that code (``close none``: without
    a code).
``reply``
    The server answered with a data frame (an echo, a protocol answer).
``open``
    Nothing came back within the timeout; the connection stayed open.
``dropped``
    The server closed the TCP connection without a close frame.
``http <status>``
    The handshake was answered with that status instead of 101.
``hung up``
    The case itself went away (an abrupt close): nothing to read.
``answered all``, ``unanswered: <kinds>``
    Every stream-protocol frame got its answer, or those of these kinds
    did not.

Expected outcomes are per server where the servers differ: daphne sends
only 1000 and 3000-4999 from an application, so the consumer's 1003, 1007
and 1009 arrive there as 4015, 4000 and 4013; and on a protocol violation
autobahn drops the TCP connection without a close frame (its
``failByDrop``), where uvicorn closes with 1002, 1007 or 1009.

An outcome a case does not allow is either a *known* defect, listed with
the case and the module where it is to be fixed, or a failure of the run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from benchmarks.stress.fuzz.raw_ws import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    RawConnection,
    frame,
    open_raw,
)

__all__ = [
    "DAPHNE_CHECKER",
    "MIB",
    "SERVERS",
    "Case",
    "Context",
    "Expected",
    "Outcomes",
    "attack",
    "concurrently",
    "handshake_outcome",
    "ours",
    "protocol_error",
    "read_outcome",
    "registrar",
    "same",
    "text",
]

SERVERS = ("uvicorn", "daphne")
#: Seconds a handshake may take before the try is reported as unanswered.
HANDSHAKE_WAIT = 5.0
#: The shortest wait for what daphne's application checker reports.
DAPHNE_CHECKER = 2.0
MIB = 1024 * 1024


@dataclass
class Context:
    """What a case needs: where the server is, and how hard to try."""

    server: str
    port: int
    rng: random.Random
    count: int
    timeout: float
    pongs: int = 0


Outcomes = dict[str, frozenset[str]]
Expected = Outcomes | None


@dataclass(frozen=True)
class Case:
    """One kind of hostile input and the outcomes it may have.

    Attributes:
        expected: The defined outcomes, per server (``None``: any).
        known: Outcomes that are wrong but known (matched by their start),
            each with where it is to be fixed.
    """

    name: str
    run: Callable[[Context], Awaitable[list[str]]]
    expected: Expected = None
    known: dict[str, str] = field(default_factory=dict)

    def allows(self, server: str, outcome: str) -> bool:
        """Return whether ``outcome`` is a defined answer to this case."""
        return self.expected is None or outcome in self.expected[server]

    def known_defect(self, outcome: str) -> str | None:
        """Return why ``outcome`` is a known defect, or ``None``."""
        for start, reason in self.known.items():
            if outcome.startswith(start):
                return reason
        return None


def same(*outcomes: str) -> Outcomes:
    """Expect the same outcomes from every server."""
    return {server: frozenset(outcomes) for server in SERVERS}


def protocol_error(code: int) -> Outcomes:
    """Expect the server's refusal of a protocol violation."""
    return {"uvicorn": frozenset({f"close {code}"}), "daphne": frozenset({"dropped"})}


def ours(code: int, *more: str) -> Outcomes:
    """Expect the consumer's close ``code`` (daphne's replacement there)."""
    daphne = {1003: 4015, 1007: 4000, 1009: 4013}.get(code, code)
    return {
        "uvicorn": frozenset({f"close {code}", *more}),
        "daphne": frozenset({f"close {daphne}", *more}),
    }


CaseRun = Callable[[Context], Awaitable[list[str]]]


def registrar(
    cases: list[Case],
) -> Callable[..., Callable[[CaseRun], CaseRun]]:
    """Return a ``@case(name, expected, **known)`` decorator adding to ``cases``."""

    def case(
        name: str, expected: Expected, **known: str
    ) -> Callable[[CaseRun], CaseRun]:
        def register(run: CaseRun) -> CaseRun:
            cases.append(Case(name, run, expected, dict(known)))
            return run

        return register

    return case


# Talking to the server.


async def read_outcome(
    conn: RawConnection,
    ctx: Context,
    *,
    until_reply: bool = False,
    at_least: float = 0.0,
) -> str:
    """Read frames until a close, the end of the connection or the timeout.

    The timeout is the context's, or ``at_least`` seconds if that is longer.
    """
    deadline = time.monotonic() + max(ctx.timeout, at_least)
    replied = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "reply" if replied else "open"
        try:
            got = await asyncio.wait_for(conn.read_frame(), remaining)
        except TimeoutError:
            return "reply" if replied else "open"
        except (asyncio.IncompleteReadError, ConnectionError):
            return "dropped"
        if got.opcode == PING:
            await conn.send(frame(PONG, got.payload))
        elif got.opcode == PONG:
            ctx.pongs += 1
        elif got.opcode == CLOSE:
            # Answer the close, as a client should, then report it.
            await conn.send(frame(CLOSE, got.payload[:2]))
            code = got.close_code
            return f"close {code if code is not None else 'none'}"
        else:
            replied = True
            if until_reply:
                return "reply"


async def attack(
    ctx: Context,
    path: str,
    chunks: Iterable[bytes],
    *,
    until_reply: bool = False,
    extra_headers: str = "",
    at_least: float = 0.0,
) -> str:
    """Open ``path``, write ``chunks``, and return the outcome.

    ``at_least`` is the shortest wait for the outcome: daphne reports an
    application's exception (a close with 1011, an HTTP 500) only when its
    checker runs, once a second.
    """
    conn = await open_raw(ctx.port)
    try:
        try:
            status = await asyncio.wait_for(
                conn.handshake("127.0.0.1", ctx.port, path, extra_headers),
                max(ctx.timeout, at_least, HANDSHAKE_WAIT),
            )
        except TimeoutError:
            return "no answer to the handshake"
        if status != 101:
            return f"http {status}" if status else "dropped"
        for chunk in chunks:
            if not await conn.send(chunk):
                break
        return await read_outcome(conn, ctx, until_reply=until_reply, at_least=at_least)
    finally:
        await conn.close()


async def handshake_outcome(ctx: Context, request: str) -> str:
    """Send a raw handshake ``request``; return the status or ``dropped``."""
    conn = await open_raw(ctx.port)
    try:
        status = await asyncio.wait_for(
            conn.handshake("127.0.0.1", ctx.port, "", request=request), ctx.timeout
        )
    except TimeoutError:
        return "open"
    finally:
        await conn.close()
    return f"http {status}" if status else "dropped"


def text(payload: str | bytes) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return frame(TEXT, data)


async def concurrently(
    ctx: Context, tries: list[tuple[str, list[bytes]]], wait: float
) -> list[str]:
    """Run ``attack`` on each (path, chunks), at most 50 at a time.

    Each waits ``wait`` seconds for an answer.
    """
    quick = Context(ctx.server, ctx.port, ctx.rng, ctx.count, wait)
    gate = asyncio.Semaphore(50)

    async def one(path: str, chunks: list[bytes]) -> str:
        async with gate:
            return await attack(quick, path, chunks)

    outcomes = await asyncio.gather(*(one(path, chunks) for path, chunks in tries))
    ctx.pongs += quick.pongs
    return list(outcomes)
