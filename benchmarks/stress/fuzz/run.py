"""Throw hostile frames at live servers; report what was tried and what came back.

Run::

    python -m benchmarks.stress.fuzz                  # uvicorn and daphne
    python -m benchmarks.stress.fuzz --servers=daphne --count=2000 --seed=7

For each server it starts the application of :mod:`benchmarks.stress.fuzz.app` on
a loopback port, opens three sentinel connections (an echo, a JSON echo,
a stream consumer), then runs every case of :mod:`benchmarks.stress.fuzz.cases`:
invalid UTF-8 at the frame level, protocol violations, huge and fragmented
frames, control-frame abuse, invalid JSON, binary frames to JSON consumers,
handlers that raise, layer messages with no handler, invalid group names,
malformed handshakes, abrupt closes, random frames and random
stream-protocol frames (``--count`` of each, from ``--seed``).

After each case it checks that the server process is alive and that the
echo sentinel still answers; at the end, that all three sentinels and a new
connection do. The report lists, per case, how many tries it made and the
outcomes (close codes, replies, HTTP statuses), marking any outcome the case
does not allow, then the tracebacks and warnings in the server's log. The
exit status is 1 if a server died, a sentinel stopped answering, an outcome
was not allowed, or the log holds a traceback of an exception not raised
on purpose by the application.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import Server, ServerError
from benchmarks.stress.fuzz import cases as _fuzz_cases, random_frames as _fuzz_random
from benchmarks.stress.fuzz.client import Context
from benchmarks.stress.fuzz.raw_ws import (
    PING,
    PONG,
    TEXT,
    RawConnection,
    frame,
    open_raw,
)

APP = "benchmarks.stress.fuzz.app:application"

CASES = [*_fuzz_cases.CASES, *_fuzz_random.CASES]

#: Exceptions the application raises on purpose (see benchmarks.stress.fuzz.app):
#: their tracebacks in the server log are expected, one per try.
EXPECTED_EXCEPTIONS = frozenset(
    {
        # ws/fail/: content["message"] on {}.
        "KeyError",
        # ws/unknown/: a layer message with no handler.
        "InvalidMessageError",
        # ws/room/<room>/: a group name made invalid by the URL.
        "InvalidChannelName",
        # ws/streams/: the request "fail".
        "RuntimeError: fuzz: the request handler failed",
    }
)

#: Tracebacks of known defects, by the start of their exception line, with
#: where each is to be fixed. They are reported, and do not fail the run.
KNOWN_TRACEBACKS = {
    "UnicodeDecodeError": "uvicorn (its websockets-sansio protocol, the default "
    "with websockets installed) logs a traceback for each text frame of invalid "
    "UTF-8, then closes with 1007 as it should",
}


def known_traceback(line: str) -> str | None:
    """Return why a traceback is a known defect, or ``None``."""
    for start, reason in KNOWN_TRACEBACKS.items():
        if line.startswith(start[:100]):
            return reason
    return None


@dataclass
class CaseResult:
    """What one case tried and what came back."""

    name: str
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    known: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def tries(self) -> int:
        return sum(self.outcomes.values())


@dataclass
class ServerResult:
    """One server's run: the cases, its survival, its log."""

    server: str
    cases: list[CaseResult] = field(default_factory=list)
    died: str | None = None
    sentinel_failures: list[str] = field(default_factory=list)
    stopped_early: bool = False
    tracebacks: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    log_path: Path | None = None

    @property
    def unexpected_tracebacks(self) -> Counter[str]:
        return Counter(
            {
                line: count
                for line, count in self.tracebacks.items()
                if not any(line.startswith(e) for e in EXPECTED_EXCEPTIONS)
                and known_traceback(line) is None
            }
        )

    @property
    def ok(self) -> bool:
        return (
            self.died is None
            and not self.sentinel_failures
            and not any(result.unexpected for result in self.cases)
            and not self.unexpected_tracebacks
        )


class Sentinel:
    """A well-behaved connection that must keep working throughout the run."""

    def __init__(self, path: str, request: bytes, answered: str) -> None:
        self.path = path
        self.request = request
        self.answered = answered
        self.conn: RawConnection | None = None

    async def open(self, port: int) -> None:
        self.conn = await open_raw(port)
        status = await self.conn.handshake("127.0.0.1", port, self.path)
        if status != 101:
            raise ServerError(f"Sentinel {self.path} got HTTP {status}.")

    async def check(self, wait: float = 5.0) -> bool:
        """Return whether the sentinel still gets its answer within ``wait`` s."""
        conn = self.conn
        if conn is None or not await conn.send(frame(TEXT, self.request)):
            return False
        deadline = time.monotonic() + wait
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                got = await asyncio.wait_for(conn.read_frame(), remaining)
                if got.opcode == PING:
                    await conn.send(frame(PONG, got.payload))
                elif got.opcode == TEXT and self.answered in got.payload.decode():
                    return True
                elif got.opcode not in (PING, PONG, TEXT):
                    return False
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False
        return False

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def sentinels() -> list[Sentinel]:
    return [
        Sentinel("/ws/plain/", b"sentinel", "sentinel"),
        Sentinel("/ws/json/", b'{"sentinel": 1}', '"sentinel"'),
        Sentinel("/ws/streams/", b'{"kind": "ping", "id": 1}', '"pong"'),
    ]


def read_log(text: str) -> tuple[Counter[str], Counter[str]]:
    """Return the exception lines of the log's tracebacks, and its warnings.

    Warnings are counted by their logger and the start of their message,
    with numbers and paths replaced, so that one kind is one row.
    """
    tracebacks: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            for after in lines[index + 1 :]:
                if after and not after.startswith((" ", "\t")):
                    # The exception line: "module.Class: message".
                    name, _, message = after.partition(": ")
                    if name.endswith("UnicodeDecodeError"):
                        # One row, whatever the bytes and their position.
                        message = message.split(":", 1)[0]
                    tracebacks[f"{name.rsplit('.', 1)[-1]}: {message}"[:100]] += 1
                    break
        elif line.startswith("WARNING"):
            kind = re.sub(r"/ws/\S*", "<path>", line)
            kind = re.sub(r"\d+", "N", kind)
            warnings[kind[:110]] += 1
    return tracebacks, warnings


async def fuzz(
    server: Server, count: int, seed: int, deadline: float, wait: float = 2.0
) -> ServerResult:
    """Run every case against ``server``; return what happened."""
    result = ServerResult(server.name, log_path=server.log_path)
    rng = random.Random(f"{seed}-{server.name}")
    watchers = sentinels()
    for sentinel in watchers:
        await sentinel.open(server.port)
    try:
        for case in CASES:
            if time.monotonic() > deadline:
                result.stopped_early = True
                break
            outcome = CaseResult(case.name)
            ctx = Context(server.name, server.port, rng, count, timeout=wait)
            started = time.monotonic()
            try:
                got = await asyncio.wait_for(case.run(ctx), 120)
            except TimeoutError:
                got = ["the case timed out"]
            except OSError as exc:
                got = [f"client error: {type(exc).__name__}: {exc}"]
            outcome.seconds = time.monotonic() - started
            outcome.outcomes.update(got)
            for seen in got:
                if case.allows(server.name, seen):
                    continue
                reason = case.known_defect(seen)
                if reason is None:
                    outcome.unexpected[seen] += 1
                else:
                    outcome.known[seen] = reason
            result.cases.append(outcome)
            if server.process.poll() is not None:
                result.died = f"after {case.name!r}"
                break
            if not await watchers[0].check():
                result.sentinel_failures.append(f"echo, after {case.name!r}")
        if result.died is None:
            for sentinel in watchers:
                if not await sentinel.check():
                    result.sentinel_failures.append(f"{sentinel.path} at the end")
            fresh = Sentinel("/ws/json/", b'{"fresh": 1}', '"fresh"')
            await fresh.open(server.port)
            if not await fresh.check():
                result.sentinel_failures.append("a new connection at the end")
            await fresh.close()
    finally:
        for sentinel in watchers:
            await sentinel.close()
    return result


def run(
    servers: list[str],
    count: int,
    seed: int,
    time_limit: float,
    logs: Path,
    wait: float = 2.0,
) -> list[ServerResult]:
    """Fuzz each server in turn (each has ``time_limit`` seconds of cases).

    ``wait`` is how long a try waits for an answer that may never come.
    """
    results = []
    for name in servers:
        server = Server(name, APP, {}, None, logs / f"fuzz-{name}.log")
        try:
            deadline = time.monotonic() + time_limit
            result = asyncio.run(fuzz(server, count, seed, deadline, wait))
            if result.died is None and server.process.poll() is not None:
                result.died = "at the end of the run"
        finally:
            server.kill()
        result.tracebacks, result.warnings = read_log(server.output)
        results.append(result)
    return results


def report(results: list[ServerResult], count: int, seed: int) -> str:
    """Return the run's report as text.

    Rows are marked ``!!`` for an outcome the case does not allow and
    ``[n]`` for a known defect, explained under the table.
    """
    out = [f"Hostile frames against live servers (--count={count}, --seed={seed})", ""]
    for result in results:
        out.extend(_server_report(result))
    return "\n".join(out)


class _Notes(list[str]):
    """Footnotes of a report: each reason once, numbered from 1."""

    def mark(self, reason: str) -> str:
        if reason not in self:
            self.append(reason)
        return f"[{self.index(reason) + 1}]"


def _server_report(result: ServerResult) -> list[str]:
    out: list[str] = []
    notes = _Notes()
    note = notes.mark
    tries = sum(case.tries for case in result.cases)
    verdict = "OK" if result.ok else "FAILED"
    out.append(
        f"== {result.server}: {verdict}, {tries} tries in {len(result.cases)} cases"
    )
    out.append("")
    width = max((len(case.name) for case in result.cases), default=10)
    for case in result.cases:
        seen = ", ".join(
            (f"{outcome} x{n}" if n > 1 else outcome)
            + (f" {note(case.known[outcome])}" if outcome in case.known else "")
            for outcome, n in sorted(case.outcomes.items())
        )
        mark = "!!" if case.unexpected else "  "
        out.append(
            f"{mark} {case.name:<{width}}  {case.tries:>5}  "
            f"{case.seconds:5.1f} s  {seen}"
        )
        if case.unexpected:
            out.append(f"   {'':<{width}}  not allowed: {dict(case.unexpected)}")
    out.append("")
    out.append(
        "Server: "
        + (f"DIED {result.died}" if result.died else "alive throughout")
        + "; sentinels: "
        + (
            "answered after every case"
            if not result.sentinel_failures
            else "FAILED: " + "; ".join(result.sentinel_failures)
        )
        + (" (stopped at --time-limit)" if result.stopped_early else "")
    )
    out.append(f"Tracebacks in the server log: {sum(result.tracebacks.values())}")
    for line, n in result.tracebacks.most_common():
        reason = known_traceback(line)
        if line in result.unexpected_tracebacks:
            flag = "  <- UNEXPECTED"
        elif reason is not None:
            flag = f"  {note(reason)}"
        else:
            flag = "  (raised on purpose by the application)"
        out.append(f"  {n:>5}  {line}{flag}")
    out.append(f"Warnings in the server log: {sum(result.warnings.values())}")
    for line, n in result.warnings.most_common(15):
        out.append(f"  {n:>5}  {line}")
    if notes:
        out.append("Known defects (reported; they do not fail the run):")
        for number, reason in enumerate(notes, 1):
            out.append(f"  [{number}] {reason}")
    out.append(f"Log: {result.log_path}")
    out.append("")
    return out
