"""Count what happens in a ``testecho`` run, and say it in a few lines.

:class:`LoadStats` is told each event, with the time it happened, by the
load runner (:mod:`example_project.c10k.runner`); it keeps the counts and
timings and writes the progress line and the summary. :func:`failure_of`
names the cause of a client's failure from the exception that ended it.
No I/O and no clock here: the runner passes ``now`` in.
"""

from __future__ import annotations

import errno
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from django_realtime.exceptions import RealtimeError
from example_project.c10k.client import ConnectionClosed, HandshakeError

__all__ = [
    "Failure",
    "LoadStats",
    "UnexpectedMessage",
    "WrongEcho",
    "failure_of",
    "percentile",
]


class WrongEcho(RealtimeError):
    """The server answered an echo with something else."""

    def __init__(self, sent: str, received: str | bytes) -> None:
        super().__init__(f"Expected {sent[:40]!r}, got {received[:40]!r}.")
        self.sent = sent
        self.received = received


class UnexpectedMessage(RealtimeError):
    """The server sent a message while the client was not waiting for an echo."""

    def __init__(self, received: str | bytes) -> None:
        super().__init__(f"Expected no message, got {received[:40]!r}.")
        self.received = received


@dataclass(frozen=True)
class Failure:
    """Why one client failed, and when.

    Attributes:
        client: The client's number, from 0.
        phase: What the client was doing: ``connect``, ``echo``, ``hold``
            (idle between echoes and until the end) or ``close``.
        cause: What went wrong, in a few words that group failures:
            ``refused with HTTP 403``, ``timeout``, ``reset``, ``wrong echo``.
        detail: More about this one failure, or ``""``.
    """

    client: int
    phase: str
    cause: str
    detail: str = ""

    @property
    def kind(self) -> str:
        """Return the phase and cause, which failures are counted by."""
        return f"{self.phase}: {self.cause}"

    def __str__(self) -> str:
        text = f"client {self.client} failed at {self.kind}"
        return f"{text} ({self.detail})" if self.detail else text


def failure_of(client: int, phase: str, exc: BaseException) -> Failure:
    """Return the :class:`Failure` of ``client`` that ``exc`` ended in ``phase``."""
    detail = str(exc)
    if isinstance(exc, HandshakeError):
        if exc.status in (0, 101):
            cause = "bad handshake answer"
        else:
            cause = f"refused with HTTP {exc.status}"
            detail = exc.body[:100].decode(errors="replace").strip()
    elif isinstance(exc, ConnectionClosed):
        cause = f"closed by the server ({exc.code})"
        detail = exc.reason
    elif isinstance(exc, WrongEcho):
        cause = "wrong echo"
    elif isinstance(exc, UnexpectedMessage):
        cause = "unexpected message"
    elif isinstance(exc, TimeoutError):
        cause = "timeout"
    elif isinstance(exc, ConnectionRefusedError):
        cause = "connection refused"
    elif isinstance(exc, ConnectionResetError):
        cause = "reset"
    elif isinstance(exc, OSError) and exc.errno is not None:
        cause = errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    else:
        cause = type(exc).__name__
    return Failure(client, phase, cause, detail)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (nearest rank) of sorted ``ordered``.

    Raises:
        ValueError: ``ordered`` is empty or ``q`` is not in [0, 100].
    """
    if not ordered:
        raise ValueError("Expected at least one value, got none.")
    if not 0 <= q <= 100:
        raise ValueError(f"Expected a percentile between 0 and 100, got {q}.")
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class LoadStats:
    """The counts and timings of one run, and how to report them.

    Args:
        clients: How many clients the run starts.
        messages: How many echoes each client sends.
        start: When the run started, in seconds of the runner's clock.
        ramp: Over how many seconds the clients start.
    """

    def __init__(self, clients: int, messages: int, start: float, ramp: float) -> None:
        self.clients = clients
        self.messages = messages
        self.start = start
        self.ramp = ramp
        self.started = 0
        self.connected = 0
        self.peak = 0
        self.finished = 0
        self.last_handshake: float | None = None
        self.handshake_times: list[float] = []
        self.round_trips: list[float] = []
        self.failures: Counter[str] = Counter()

    @property
    def failed(self) -> int:
        """Return how many clients failed."""
        return sum(self.failures.values())

    def attempt(self) -> None:
        """Count a client that starts its handshake."""
        self.started += 1

    def handshake(self, now: float, seconds: float) -> None:
        """Count a handshake accepted at ``now`` that took ``seconds``."""
        self.connected += 1
        self.peak = max(self.peak, self.connected)
        self.last_handshake = now
        self.handshake_times.append(seconds)

    def echo(self, seconds: float) -> None:
        """Count an echo that came back right after ``seconds``."""
        self.round_trips.append(seconds)

    def disconnect(self) -> None:
        """Count a connection that ended (cleanly or not)."""
        self.connected -= 1

    def finish(self) -> None:
        """Count a client that did everything it had to."""
        self.finished += 1

    def fail(self, failure: Failure) -> None:
        """Count a client that failed."""
        self.failures[failure.kind] += 1

    def progress_line(self, now: float) -> str:
        """Return one line on how the run is going at ``now``."""
        return (
            f"{now - self.start:6.1f} s  started {self.started}/{self.clients}  "
            f"connected {self.connected}  peak {self.peak}  "
            f"failures {self.failed}  echoes ok {len(self.round_trips)}"
            f"/{self.clients * self.messages}"
        )

    def summary(self) -> list[str]:
        """Return the lines of the final report."""
        lines = [
            f"Clients: {self.clients}, {self.started} started, {self.finished} "
            f"finished, {self.failed} failed.",
            f"Peak concurrent connections: {self.peak}.",
        ]
        handshakes = len(self.handshake_times)
        if handshakes and self.last_handshake is not None:
            took = max(self.last_handshake - self.start, 1e-9)
            ordered = sorted(self.handshake_times)
            asked = f"{self.clients / self.ramp:.0f}/s" if self.ramp > 0 else "all"
            lines.append(
                f"Handshakes: {handshakes} in {took:.1f} s, {handshakes / took:.0f}/s "
                f"(the ramp asked for {asked}); each took p50 "
                f"{_ms(percentile(ordered, 50))}, p99 {_ms(percentile(ordered, 99))}, "
                f"max {_ms(ordered[-1])}."
            )
        else:
            lines.append("Handshakes: none succeeded.")
        echoes = len(self.round_trips)
        expected = self.clients * self.messages
        if echoes:
            ordered = sorted(self.round_trips)
            lines.append(
                f"Echoes: {echoes} of {expected} ok; round trip p50 "
                f"{_ms(percentile(ordered, 50))}, p99 {_ms(percentile(ordered, 99))}, "
                f"max {_ms(ordered[-1])}."
            )
        else:
            lines.append(f"Echoes: 0 of {expected} ok.")
        if not self.failures:
            lines.append("Failures: none.")
        else:
            lines.append("Failures by cause:")
            lines.extend(
                f"  {kind}: {count}" for kind, count in self.failures.most_common()
            )
        return lines
