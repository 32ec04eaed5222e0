"""A short run of the streams fault-injection benchmark, on real servers and Redis.

``benchmarks.stream_faults`` with 20 clients for a few seconds over one
uvicorn and one daphne process sharing Redis: every client drops its
connection a few times (resets and clean closes), the servers' Redis
connections are cut once, and some clients stay away past the history
window. Nothing may be lost without a signal, nor arrive twice.

First, the benchmark's own bookkeeping, without servers: it must see a
silent loss, a duplicate and an unjustified signal when there is one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from benchmarks import stream_faults
from benchmarks._stream_ledger import Ledger, Track

Test = TypeVar("Test", bound=Callable[..., Any])


def e2e(test: Test) -> Test:
    """Mark ``test`` as a run on real server processes and Redis."""
    for mark in (
        pytest.mark.e2e,
        pytest.mark.redis,
        pytest.mark.timeout(90),
        pytest.mark.usefixtures("redis_server"),
    ):
        test = mark(test)
    return test


def _ledger(*positions: tuple[str, int]) -> Ledger:
    ledger = Ledger()
    for n, (epoch, offset) in enumerate(positions):
        ledger.add(epoch, offset, n)
    return ledger


def _subscribed(epoch: str, offset: int, **more: object) -> dict[str, object]:
    frame = {"kind": "subscribed", "id": 1, "stream": "s", "epoch": epoch}
    return {**frame, "offset": offset, "recovered": False, "replayed": 0, **more}


def test_a_skipped_publication_counts_as_missing_and_as_a_gap() -> None:
    ledger = _ledger(("e", 1), ("e", 2), ("e", 3))
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    track.publication("e", 1, 0)
    track.publication("e", 3, 2)

    counts = track.compare(ledger)

    assert counts["expected"] == 3
    assert counts["delivered"] == 2
    assert counts["missing"] == 1
    assert counts["gaps"] == 1
    assert track.missing == [("e", 2)]


def test_a_repeated_publication_counts_as_a_duplicate() -> None:
    ledger = _ledger(("e", 1), ("e", 2))
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    for offset in (1, 2, 2, 1):
        track.publication("e", offset, offset - 1)

    counts = track.compare(ledger)

    assert counts["delivered"] == 2
    assert counts["duplicates"] == 2
    assert counts["missing"] == 0


def test_a_lost_frame_covers_what_was_published_up_to_its_position() -> None:
    # e:2 and e:3 were published, then the store was flushed twice.
    ledger = _ledger(("e", 1), ("e", 2), ("e", 3), ("f", 1), ("g", 1), ("g", 2))
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    track.publication("e", 1, 0)
    track.lost(
        {
            "kind": "lost",
            "stream": "s",
            "epoch": "g",
            "offset": 1,
            "reason": "epoch_changed",
        }
    )
    track.publication("g", 2, 5)

    counts = track.compare(ledger)

    assert counts["delivered"] == 2
    assert counts["signalled"] == 4
    assert counts["missing"] == 0
    assert counts["gaps"] == 0
    assert track.losses == {"epoch_changed": 1}


def test_outside_window_within_the_window_is_unjustified() -> None:
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 0, reason=None), None)
    since = track.position
    assert since is not None

    reason = track.subscribed(_subscribed("e", 5, reason="outside_window"), since)

    assert reason == "outside_window"
    assert track.unjustified == 1


def test_a_resume_that_skips_the_replay_it_announced_is_a_protocol_error() -> None:
    track = Track("s", history=10)
    track.subscribed(_subscribed("e", 3, reason=None), None)
    since = track.position

    track.subscribed(_subscribed("e", 7, recovered=True, replayed=2), since)

    assert len(track.errors) == 1


@pytest.fixture
def redis_server() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        reason = f"Redis is not reachable at 127.0.0.1:6379 ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)


@e2e
async def test_clients_dropping_on_two_servers_lose_nothing_silently_nor_twice(
    tmp_path: Path,
) -> None:
    options = stream_faults.Options(
        clients=20,
        duration=8.0,
        rate=40.0,
        history=100,  # 2.5 s of history
        drop_every=2.0,
        long_away=0.1,
        kill_redis_every=5.0,
        drain_timeout=15.0,
        logs=tmp_path,
        seed=5,
    )

    outcome = await stream_faults.run(options)

    figures = outcome.total
    assert outcome.failures == [], stream_faults.report(outcome, options)
    assert figures["missing"] == 0
    assert figures["duplicates"] == 0
    assert figures["undrained"] == 0
    assert figures["delivered"]
    assert figures["delivered"] + figures["signalled"] == figures["expected"]
    # The faults happened, and most resumes were recovered.
    assert figures["redis_kills"] == 1
    assert figures["redis_killed"]
    assert (figures["reconnects"] or 0) >= 2 * options.clients
    assert (figures["resumed"] or 0) >= (figures["not_resumed"] or 0)
    assert figures["server_resyncs"]
    for server in ("uvicorn", "daphne"):
        assert outcome.figures[server]["resumed"], server


@e2e
async def test_a_flushed_store_and_a_restarted_server_are_signalled_not_silent(
    tmp_path: Path,
) -> None:
    options = stream_faults.Options(
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
        logs=tmp_path,
        seed=7,
    )

    outcome = await stream_faults.run(options)

    figures = outcome.total
    assert outcome.failures == [], stream_faults.report(outcome, options)
    assert figures["missing"] == 0
    assert figures["duplicates"] == 0
    assert figures["flushes"] == 2
    assert figures["restarts"] == 1
    # Every client was subscribed through both flushes: each was told.
    assert (figures["lost_epoch_changed"] or 0) >= 2 * options.clients
    assert figures["unjustified"] == 0
