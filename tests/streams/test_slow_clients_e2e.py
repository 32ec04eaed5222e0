"""A client that stops reading, on a real uvicorn: the others do not wait for it.

A short run of ``benchmarks.slow_client``: 100 clients read a stream
broadcast of 16 KiB publications, 20 a second, for 4 s, while one client
(small receive buffer, Ethernet MSS) stops reading once subscribed and
reads again at the end. Against a baseline run without it, the readers'
p99 must stay within a generous bound, every reader must get everything,
and the slow client must get what its policy promises: ``catch_up``, every
publication once and in order from the history; ``close``, code 4008,
with the server holding no more than its write buffers for it meanwhile.

First, the benchmark's own judgement, without servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from benchmarks import slow_client
from benchmarks._slow_client_report import (
    WRITE_BUFFERS,
    CaseResult,
    Limits,
    SlowOutcome,
    allowance,
    judge,
    parse_log,
)

OPTIONS = slow_client.Options(
    readers=100,
    slow=(1,),
    duration=4.0,
    rate=20.0,
    servers=("uvicorn",),
    max_queued=20,
    # Long enough that a catch-up finds everything still there.
    history=1000,
    pin=False,
)

Test = TypeVar("Test", bound=Callable[..., Any])


def e2e(test: Test) -> Test:
    """Mark ``test`` as a run on a real server process and Redis."""
    # The timeout covers the module's baseline run, for the first test.
    for mark in (pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(60)):
        test = mark(test)
    return test


def _result(**figures: object) -> CaseResult:
    result = CaseResult("uvicorn", "stream", "close", 1, 10)
    for name, value in figures.items():
        setattr(result, name, value)
    return result


def test_the_log_counts_catch_ups_closes_and_layer_drops() -> None:
    text = "\n".join(
        [
            "WARNING django_realtime.streams: /ws/streams/ does not keep up (51 "
            "publications, 835000 characters queued): dropped them, to send "
            "again from history once it reads.",
            "WARNING django_realtime.streams: Closing /ws/streams/ with 4008: it "
            "does not keep up (21 publications, 344000 characters queued). It "
            "resumes from history when it reconnects.",
            "WARNING django_realtime.layers.redis.layer: "
            "group_send to 'bench': 1 of 101 "
            "members were full; message dropped for them (message type "
            "'bench.message'; 1 dropped since the last report).",
            "WARNING django_realtime.layers.redis.layer: "
            "9 more message(s) lost since the "
            "last report: full members of group 'bench'.",
            "ERROR uvicorn.error: something else",
        ]
    )

    counts = parse_log(text)

    assert (counts.catch_ups, counts.closes) == (1, 1)
    assert counts.dropped_publications == 72
    assert counts.layer_dropped == 10
    assert counts.errors == 1
    assert counts.other_warnings == 0


def test_a_server_that_keeps_what_it_cannot_send_fails_the_held_check() -> None:
    per_client = allowance("stream", 16_500, 50, 4 * 1024 * 1024, 50)
    kept = _result(slow_clients=[SlowOutcome(held_bytes=2_400_000)])
    bounded = _result(slow_clients=[SlowOutcome(held_bytes=80_000)])

    judge(kept, None, Limits(), per_client)
    judge(bounded, None, Limits(), per_client)

    assert per_client.held == 50 * 16_500 + WRITE_BUFFERS
    assert len(kept.failures) == 1
    assert "held 2344 KiB" in kept.failures[0]
    assert bounded.failures == []


def test_readers_slower_than_the_bound_and_a_rising_rss_fail_the_run() -> None:
    baseline = _result(
        slow=0, latencies=[0.010] * 100, rss=[(t / 4, 50_000) for t in range(40)]
    )
    result = _result(
        latencies=[0.010] * 90 + [2.0] * 10,
        # 20 MiB more over the second half of 10 s, at a steady pace.
        rss=[(t / 4, 50_000 + max(0, t - 20) * 1024) for t in range(40)],
        published=100,
        frame_bytes=16_500,
    )

    judge(result, baseline, Limits(), allowance("stream", 16_500, 50, 1 << 22, 50))

    assert [failure.split(" ", 2)[:2] for failure in result.failures] == [
        ["Readers'", "p99"],
        ["Peak", "RSS"],
        ["RSS", "still"],
    ]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> CaseResult:
    """Run the readers alone once for the module: the latency to compare with."""
    logs = tmp_path_factory.mktemp("slow_client")
    return asyncio.run(
        slow_client.run_case("uvicorn", "stream", None, 0, OPTIONS, logs)
    )


async def _run_with_one_slow_client(policy: str, logs: Path) -> CaseResult:
    return await slow_client.run_case("uvicorn", "stream", policy, 1, OPTIONS, logs)


def _assert_readers_unaffected(result: CaseResult, baseline: CaseResult) -> None:
    assert baseline.incomplete_readers == 0
    assert result.incomplete_readers == 0, (result.delivered, result.expected)
    assert baseline.p99 is not None
    assert result.p99 is not None
    # Generous: other tests share the machine. A broadcast held up by the
    # slow client would add its whole stall, seconds, to every reader.
    bound = max(3 * baseline.p99, baseline.p99 + 0.25)
    assert result.p99 <= bound, (result.p99, baseline.p99)


@e2e
async def test_a_client_that_stops_reading_is_caught_up_from_history_later(
    baseline: CaseResult, tmp_path: Path
) -> None:
    result = await _run_with_one_slow_client("catch_up", tmp_path)

    _assert_readers_unaffected(result, baseline)
    assert result.log.catch_ups >= 1
    assert result.log.closes == 0
    assert result.log.errors == 0
    (outcome,) = result.slow_clients
    assert outcome.close_code is None
    assert outcome.caught_up
    assert (outcome.gaps, outcome.duplicates, outcome.lost_frames) == (0, 0, 0)


@e2e
async def test_a_client_that_stops_reading_is_closed_with_4008_by_the_close_policy(
    baseline: CaseResult, tmp_path: Path
) -> None:
    result = await _run_with_one_slow_client("close", tmp_path)

    _assert_readers_unaffected(result, baseline)
    assert result.log.closes == 1
    assert result.log.catch_ups == 0
    assert result.log.errors == 0
    (outcome,) = result.slow_clients
    assert outcome.close_code == 4008
    assert not outcome.caught_up
    # What it got before the close came from the write buffers, not a queue.
    assert outcome.held_bytes <= WRITE_BUFFERS
