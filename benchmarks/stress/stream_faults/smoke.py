"""``--smoke``: check the bookkeeping on planted faults, then two short runs.

A run that cannot see a silent loss, a duplicate or an unjustified signal
would pass anything, so :func:`self_check` plants each in made-up frames
first. Then :data:`RUNS` run 20 and 10 clients for a few seconds over one
uvicorn and one daphne process sharing Redis, and :func:`problems` says
what each run had to show besides its own verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from benchmarks.stress.stream_faults.ledger import Ledger, Track
from benchmarks.stress.stream_faults.report import Outcome
from benchmarks.stress.stream_faults.state import Options


def _ledger(*positions: tuple[str, int]) -> Ledger:
    ledger = Ledger()
    for n, (epoch, offset) in enumerate(positions):
        ledger.add(epoch, offset, n)
    return ledger


def _subscribed(epoch: str, offset: int, **more: object) -> dict[str, object]:
    frame = {"kind": "subscribed", "id": 1, "stream": "s", "epoch": epoch}
    return {**frame, "offset": offset, "recovered": False, "replayed": 0, **more}


def _expect(problems: list[str], what: str, got: object, expected: object) -> None:
    if got != expected:
        problems.append(f"{what}: expected {expected!r}, got {got!r}.")


def self_check() -> list[str]:
    """Return what the ledger and the tracks miss in planted faults."""
    problems: list[str] = []
    # A skipped publication is missing, and a gap.
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    track.publication("e", 1, 0)
    track.publication("e", 3, 2)
    counts = track.compare(_ledger(("e", 1), ("e", 2), ("e", 3)))
    _expect(
        problems, "a skipped publication", (counts["missing"], counts["gaps"]), (1, 1)
    )
    # A repeated publication is a duplicate.
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    for offset in (1, 2, 2, 1):
        track.publication("e", offset, offset - 1)
    counts = track.compare(_ledger(("e", 1), ("e", 2)))
    _expect(problems, "a repeated publication", counts["duplicates"], 2)
    # A lost frame covers what was published up to its position.
    ledger = _ledger(("e", 1), ("e", 2), ("e", 3), ("f", 1), ("g", 1), ("g", 2))
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    track.publication("e", 1, 0)
    lost = {"kind": "lost", "stream": "s", "epoch": "g", "offset": 1}
    track.lost({**lost, "reason": "epoch_changed"})
    track.publication("g", 2, 5)
    counts = track.compare(ledger)
    _expect(
        problems,
        "a signalled loss",
        (counts["signalled"], counts["missing"], counts["gaps"]),
        (4, 0, 0),
    )
    # outside_window while the history still holds the position.
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    since = track.position
    track.subscribed(_subscribed("e", 5, reason="outside_window"), since)
    _expect(problems, "an unjustified outside_window", track.unjustified, 1)
    # A resume that skips the replay it announced.
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 3, reason=None), None)
    since = track.position
    track.subscribed(_subscribed("e", 7, recovered=True, replayed=2), since)
    _expect(problems, "a replay skipped", len(track.errors), 1)
    return problems


def _drops(outcome: Outcome, options: Options) -> list[str]:
    figures = outcome.total
    checks = {
        "Redis cut once": figures["redis_kills"] == 1 and bool(figures["redis_killed"]),
        "every client reconnected twice": (figures["reconnects"] or 0)
        >= 2 * options.clients,
        "most resumes recovered": (figures["resumed"] or 0)
        >= (figures["not_resumed"] or 0),
        "resumed on both servers": all(
            outcome.figures[server]["resumed"] for server in options.servers
        ),
    }
    return [f"Expected: {name}." for name, ok in checks.items() if not ok]


def _flushes(outcome: Outcome, options: Options) -> list[str]:
    figures = outcome.total
    checks = {
        "two flushes and a restart": (figures["flushes"], figures["restarts"])
        == (2, 1),
        "every client told of both flushes": (figures["lost_epoch_changed"] or 0)
        >= 2 * options.clients,
    }
    return [f"Expected: {name}." for name, ok in checks.items() if not ok]


#: Each smoke run: its options, and what it must show.
RUNS: list[tuple[Options, Callable[[Outcome, Options], list[str]]]] = [
    (
        Options(
            clients=20,
            duration=8.0,
            rate=40.0,
            history=100,
            drop_every=2.0,
            long_away=0.1,
            kill_redis_every=5.0,
            drain_timeout=15.0,
            seed=5,
        ),
        _drops,
    ),
    (
        Options(
            clients=10,
            duration=6.0,
            rate=40.0,
            history=100,
            drop_every=2.0,
            long_away=0.0,
            kill_redis_every=None,
            flush_every=2.5,
            restart_every=3.5,
            drain_timeout=15.0,
            seed=7,
        ),
        _flushes,
    ),
]


def problems(
    outcome: Outcome, options: Options, extra: Callable[..., list[str]]
) -> list[str]:
    """Return the run's failures and what else it had to show."""
    figures: dict[str, Any] = outcome.total
    found = list(outcome.failures)
    if not figures["delivered"]:
        found.append("Expected deliveries, got none.")
    return found + extra(outcome, options)


def with_common(options: Options, **common: Any) -> Options:
    """Return ``options`` with the command line's servers, Redis URL and logs."""
    return replace(options, **common)
