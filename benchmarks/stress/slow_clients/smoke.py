"""``--smoke``: check the judgement on planted figures, then a short run on uvicorn.

100 clients read a stream broadcast of 16 KiB publications, 20 a second,
for 4 s, while one client stops reading once subscribed; the stream queue
holds 20 publications and the history everything. Every reader must get
every publication while the slow client stalls, and the slow client what
its policy promises: ``catch_up``, every publication once and in order;
``close``, code 4008, with no more than the write buffers held for it
meanwhile. The run's latency and memory verdicts are printed but not
required: on a shared machine they measure the neighbours too, and with a
history that holds everything a catch-up counts as held.
"""

from __future__ import annotations

from benchmarks.stress.slow_clients.report import (
    WRITE_BUFFERS,
    CaseResult,
    Limits,
    SlowOutcome,
    allowance,
    judge,
    parse_log,
)
from benchmarks.stress.slow_clients.run import Options, Outcome

OPTIONS = Options(
    readers=100,
    slow=(1,),
    duration=4.0,
    rate=20.0,
    servers=("uvicorn",),
    paths=("stream-catch_up", "stream-close"),
    max_queued=20,
    # Long enough that a catch-up finds everything still there.
    history=1000,
    pin=False,
)

_PLANTED_LOG = "\n".join(
    [
        "WARNING django_realtime.streams: /ws/streams/ does not keep up (51 "
        "publications, 835000 characters queued): dropped them, to send "
        "again from history once it reads.",
        "WARNING django_realtime.streams: Closing /ws/streams/ with 4008: it "
        "does not keep up (21 publications, 344000 characters queued). It "
        "resumes from history when it reconnects.",
        "WARNING django_realtime.layers.redis.layer: group_send to 'bench': 1 of "
        "101 members were full; message dropped for them (message type "
        "'bench.message'; 1 dropped since the last report).",
        "WARNING django_realtime.layers.redis.layer: 9 more message(s) lost since "
        "the last report: full members of group 'bench'.",
        "ERROR uvicorn.error: something else",
    ]
)


def _result(**figures: object) -> CaseResult:
    result = CaseResult("uvicorn", "stream", "close", 1, 10)
    for name, value in figures.items():
        setattr(result, name, value)
    return result


def self_check() -> list[str]:
    """Return what the judgement misses in planted figures (empty: nothing)."""
    problems = []
    counts = parse_log(_PLANTED_LOG)
    read = (counts.catch_ups, counts.closes, counts.dropped_publications)
    read += (counts.layer_dropped, counts.errors, counts.other_warnings)
    if read != (1, 1, 72, 10, 1, 0):
        problems.append(f"Expected the log read as (1, 1, 72, 10, 1, 0), got {read}.")
    per_client = allowance("stream", 16_500, 50, 4 * 1024 * 1024, 50)
    kept = _result(slow_clients=[SlowOutcome(held_bytes=2_400_000)])
    bounded = _result(slow_clients=[SlowOutcome(held_bytes=80_000)])
    judge(kept, None, Limits(), per_client)
    judge(bounded, None, Limits(), per_client)
    if len(kept.failures) != 1 or bounded.failures:
        problems.append(
            "Expected a server that keeps 2.4 MB to fail and one that keeps "
            f"80 kB to pass, got {kept.failures} and {bounded.failures}."
        )
    baseline = _result(
        slow=0, latencies=[0.010] * 100, rss=[(t / 4, 50_000) for t in range(40)]
    )
    slowed = _result(
        latencies=[0.010] * 90 + [2.0] * 10,
        rss=[(t / 4, 50_000 + max(0, t - 20) * 1024) for t in range(40)],
        published=100,
        frame_bytes=16_500,
    )
    judge(slowed, baseline, Limits(), allowance("stream", 16_500, 50, 1 << 22, 50))
    starts = [failure.split(" ", 2)[:2] for failure in slowed.failures]
    if starts != [["Readers'", "p99"], ["Peak", "RSS"], ["RSS", "still"]]:
        problems.append(f"Expected latency and RSS failures, got {slowed.failures}.")
    return problems


def problems(outcome: Outcome) -> list[str]:
    """Return what the run had to show and did not."""
    found = []
    for result in outcome.results:
        label = f"{result.server} {result.label}"
        if result.incomplete_readers:
            found.append(
                f"{label}: {result.incomplete_readers} reader(s) missed publications"
            )
        if result.log.errors:
            found.append(f"{label}: {result.log.errors} error lines in the log")
        for slow in result.slow_clients:
            if result.policy == "catch_up":
                clean = (slow.gaps, slow.duplicates, slow.lost_frames) == (0, 0, 0)
                if slow.close_code is not None or not slow.caught_up or not clean:
                    found.append(f"{label}: expected a clean catch-up, got {slow}")
            elif result.policy == "close" and (
                slow.close_code != 4008 or slow.held_bytes > WRITE_BUFFERS
            ):
                found.append(f"{label}: expected a close with 4008, got {slow}")
    return found
