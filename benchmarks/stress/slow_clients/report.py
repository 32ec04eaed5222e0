"""The figures of a ``benchmarks.stress.slow_clients`` run: verdicts and tables.

No I/O here: the driver (``benchmarks.stress.slow_clients``) hands over what it
measured as :class:`CaseResult` values; this module reads the servers'
log text, judges each run with slow clients against its baseline and lays
the figures out.

The judgement, per run with slow clients:

- **latency**: the readers' p99 from publish to receipt must stay within
  ``max(latency_factor * baseline p99, baseline p99 + latency_floor_ms)``.
  A slow client that held up the broadcast would add its whole stall
  (seconds) to every reader behind it; the factor and the floor only
  absorb the run-to-run spread of a shared 2-core machine (2.3 times at
  the same settings). Other work on the machine can still stall the
  clients' process for a second, so the driver runs a run over the limit
  once more (``--retries``) and keeps the second; the ``others`` column
  says how busy the machine was (CPU used by other processes, in cores).
- **delivery**: every reader receives every publication.
- **held**: what a slow client receives, once it reads again, from the
  server's memory (before the first sign of loss, less what was in the
  kernel) may not exceed what the path's limits let the server keep for
  it: its queue (the stream queue, or the layer channel) and the write
  buffers (256 KiB). A server that keeps everything it cannot send hands
  it all over.
- **memory bound**: the server's peak RSS may exceed the baseline's peak by
  at most ``slow * allowance + rss_slack_mib``, where the allowance is what
  the path's limits let one connection hold (the stream queue, or the
  layer channel's capacity, plus 256 KiB of write buffers).
- **still rising**: from the middle of the publishing to its end the RSS
  may grow by at most ``max(rising_floor_mib, rising_share * what was
  published to the slow clients meanwhile)``. A server that keeps what it
  cannot send grows by about all of it.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Allowance",
    "CaseResult",
    "Limits",
    "LogCounts",
    "SlowOutcome",
    "allowance",
    "judge",
    "parse_log",
    "percentile",
    "rss_rise",
    "table",
]

MIB = 1024 * 1024
# The server's write buffers for one connection (asyncio's high-water mark
# is 64 KiB; uvicorn's frame in flight, daphne's none by design) and the
# connection's own objects: an upper bound, not a measurement.
WRITE_BUFFERS = 256 * 1024

_CATCH_UP = re.compile(r"does not keep up \((\d+) publications")
_CLOSE = re.compile(r"Closing \S+ with (\d+): it does not keep up \((\d+) publications")
_FULL = re.compile(r"group_send to .*? were full; .*?; (\d+) dropped since the last")
_LOST = re.compile(r"Lost history of \S+ up to \S+ \((\w+)\)")
_MORE = re.compile(r"(\d+) more message\(s\) lost since the last report: full members")


@dataclass
class LogCounts:
    """What one server's log says about slow clients."""

    catch_ups: int = 0
    closes: int = 0
    dropped_publications: int = 0
    layer_dropped: int = 0
    lost_history: int = 0
    other_warnings: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)


def parse_log(text: str) -> LogCounts:
    """Count the slow-client lines (and anything else alarming) in a log."""
    counts = LogCounts()
    for line in text.splitlines():
        if match := _CLOSE.search(line):
            counts.closes += 1
            counts.dropped_publications += int(match[2])
        elif match := _CATCH_UP.search(line):
            counts.catch_ups += 1
            counts.dropped_publications += int(match[1])
        elif (match := _FULL.search(line)) or (match := _MORE.search(line)):
            counts.layer_dropped += int(match[1])
        elif _LOST.search(line):
            counts.lost_history += 1
        elif line.startswith(("ERROR", "CRITICAL", "Traceback")):
            counts.errors += 1
            if len(counts.samples) < 5:
                counts.samples.append(line[:300])
        elif line.startswith("WARNING"):
            counts.other_warnings += 1
            if len(counts.samples) < 5:
                counts.samples.append(line[:300])
    return counts


@dataclass
class SlowOutcome:
    """What happened to one client that stopped reading.

    Attributes:
        kernel_bytes: Bytes in the kernel's queues for its connection when
            publishing was over (the server socket's send queue and the
            client socket's receive queue): what neither process holds.
        after_frames: Frames it received once it read again.
        after_bytes: Their characters.
        held_bytes: What the server still held for it when publishing was
            over: the characters it received before the first sign of loss
            (a gap, a ``lost`` frame, the close), less ``kernel_bytes``.
            Exact when the stall outlasts what the server may keep (the
            layer channel's capacity, the stream history), as in the
            default runs: a stream catch-up from a history that still had
            everything would count as held.
        connection: The state of the server's socket when publishing was
            over (after ``--linger``): ``ESTABLISHED``, ``FIN_WAIT1``...,
            or ``gone``.
        close_code: The close code it received (1006: the connection was
            cut without one), or ``None`` if it was still open at the end.
        caught_up: It received the last publication.
        gaps: Jumps in the sequence it received (publications never sent
            to it, and not signalled).
        skipped: Publications those jumps skipped.
        lost_frames: ``lost`` frames received (streams: history it was told
            it had missed).
        duplicates: Publications received twice or out of order.
    """

    kernel_bytes: int = 0
    after_frames: int = 0
    after_bytes: int = 0
    held_bytes: int = 0
    connection: str = "?"
    close_code: int | None = None
    caught_up: bool = False
    gaps: int = 0
    skipped: int = 0
    lost_frames: int = 0
    duplicates: int = 0


@dataclass
class CaseResult:
    """The measurements of one run: one server, one path, some slow clients."""

    server: str
    path: str
    policy: str | None
    slow: int
    readers: int
    published: int = 0
    publish_seconds: float = 0.0
    late: int = 0
    frame_bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    expected: int = 0
    delivered: int = 0
    incomplete_readers: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)
    rss_after: int = 0
    cpu_seconds: float = 0.0
    other_cpu_seconds: float = 0.0
    attempt: int = 1
    slow_clients: list[SlowOutcome] = field(default_factory=list)
    log: LogCounts = field(default_factory=LogCounts)
    failures: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Return the path and policy, as the tables name them."""
        return f"{self.path} {self.policy}" if self.policy else self.path

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float | None:
        return percentile(self.latencies, 0.99)

    @property
    def peak_kib(self) -> int:
        return max((kib for _, kib in self.rss), default=0)


@dataclass(frozen=True)
class Limits:
    """The thresholds of the judgement (the command's options)."""

    latency_factor: float = 3.0
    latency_floor_ms: float = 50.0
    rss_slack_mib: float = 16.0
    rising_floor_mib: float = 8.0
    rising_share: float = 0.5


def percentile(values: Sequence[float], share: float) -> float | None:
    """Return the nearest-rank percentile of sorted ``values`` (None if empty)."""
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(share * len(values) + 0.5) - 1))
    return values[index]


@dataclass(frozen=True)
class Allowance:
    """What one slow connection may cost the server on a path, in bytes.

    Attributes:
        memory: Its share of the RSS: a stream connection's queue holds at
            most ``max_queued`` publications or ``max_queued_bytes`` of
            payload, each kept with its frame (twice its size); a group
            member's layer channel holds ``capacity`` messages; plus the
            write buffers.
        held: What it may still receive from the server's memory when it
            reads again: the write buffers, and the queue (a stream
            connection's publications, a group member's channel). After a
            long stall a stream queue has overflowed and is dropped
            (``catch_up``) or never sent (``close``), so less arrives.
    """

    memory: int
    held: int


def allowance(
    path: str, frame_bytes: int, max_queued: int, max_queued_bytes: int, capacity: int
) -> Allowance:
    """Return the :class:`Allowance` of one slow connection on ``path``."""
    if path == "stream":
        count = min(max_queued, max_queued_bytes // max(frame_bytes, 1))
        queued = count * frame_bytes
        return Allowance(2 * queued + WRITE_BUFFERS, queued + WRITE_BUFFERS)
    channel = capacity * frame_bytes
    return Allowance(channel + WRITE_BUFFERS, channel + WRITE_BUFFERS)


def rss_rise(samples: Sequence[tuple[float, int]]) -> int | None:
    """Return the RSS growth in KiB from the middle of the samples to their end.

    The median of the samples between 45% and 55% of the time span is
    compared with the median of the last 10%, so a single spike counts
    for nothing.
    """
    if len(samples) < 10:
        return None
    first, last = samples[0][0], samples[-1][0]
    span = last - first
    middle = [k for t, k in samples if 0.45 * span <= t - first <= 0.55 * span]
    tail = [k for t, k in samples if t - first >= 0.9 * span]
    if not middle or not tail:
        return None
    return round(statistics.median(tail) - statistics.median(middle))


def judge(
    result: CaseResult,
    baseline: CaseResult | None,
    limits: Limits,
    per_slow_client: Allowance,
) -> None:
    """Fill ``result.failures`` from its figures and its baseline's."""
    failures = result.failures
    if result.incomplete_readers:
        failures.append(
            f"{result.incomplete_readers} reader(s) missed publications "
            f"({result.delivered:,} of {result.expected:,} delivered)."
        )
    if result.slow_clients:
        held = max(outcome.held_bytes for outcome in result.slow_clients)
        if held > per_slow_client.held:
            failures.append(
                f"The server held {held / 1024:.0f} KiB for a slow client "
                f"(allowed {per_slow_client.held / 1024:.0f} KiB): what it "
                "could not send, it kept."
            )
    if baseline is None or not result.slow:
        return
    p99, base = result.p99, baseline.p99
    if p99 is not None and base is not None:
        limit = max(limits.latency_factor * base, base + limits.latency_floor_ms / 1000)
        if p99 > limit:
            failures.append(
                f"Readers' p99 {p99 * 1000:.1f} ms is over {limit * 1000:.1f} ms "
                f"(baseline {base * 1000:.1f} ms)."
            )
    bound = baseline.peak_kib * 1024 + result.slow * per_slow_client.memory
    bound += int(limits.rss_slack_mib * MIB)
    if result.peak_kib * 1024 > bound:
        failures.append(
            f"Peak RSS {result.peak_kib / 1024:.1f} MiB is over the bound "
            f"{bound / MIB:.1f} MiB (baseline peak {baseline.peak_kib / 1024:.1f} "
            f"MiB + {result.slow} x the path's allowance + slack)."
        )
    rise = rss_rise(result.rss)
    if rise is not None:
        fed = fed_in_second_half(result)
        allowed = max(limits.rising_floor_mib * MIB, limits.rising_share * fed)
        if rise * 1024 > allowed:
            failures.append(
                f"RSS still rising: +{rise / 1024:.1f} MiB over the second half "
                f"of the publishing, while {fed / MIB:.1f} MiB were published "
                f"to the slow clients (allowed {allowed / MIB:.1f} MiB)."
            )


def fed_in_second_half(result: CaseResult) -> int:
    """Return the bytes published to the slow clients in the second half."""
    return result.slow * (result.published // 2) * result.frame_bytes


# The tables.


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _mib(kib: float | None, sign: bool = False) -> str:
    if kib is None:
        return "-"
    return f"{kib / 1024:+.1f}" if sign else f"{kib / 1024:.1f}"


def _codes(outcomes: Sequence[SlowOutcome]) -> str:
    codes = sorted({o.close_code for o in outcomes}, key=lambda c: (c is None, c))
    return ",".join("open" if c is None else str(c) for c in codes) or "-"


def table(
    results: Sequence[CaseResult], baselines: dict[tuple[str, str], CaseResult]
) -> str:
    """Return the two tables of a run: the readers, then the slow clients."""
    head = (
        f"{'server':<8} {'path':<16} {'slow':>4} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'x base':>6} {'max ms':>7} {'delivered':>19} "
        f"{'RSS MiB start/peak/end':>24} {'rise':>6} {'srv cpu':>7} "
        f"{'others':>6} {'try':>3}"
    )
    lines = [head, "-" * len(head)]
    for result in results:
        baseline = baselines.get((result.server, result.path))
        p99, base = result.p99, baseline.p99 if baseline else None
        ratio = f"{p99 / base:.2f}" if result.slow and p99 and base else "-"
        rss = result.rss
        start = rss[0][1] if rss else None
        end = rss[-1][1] if rss else None
        memory = f"{_mib(start)}/{_mib(result.peak_kib)}/{_mib(end)}"
        seconds = result.publish_seconds or 1.0
        share = result.cpu_seconds / seconds
        others = result.other_cpu_seconds / seconds
        lines.append(
            f"{result.server:<8} {result.label:<16} {result.slow:>4} "
            f"{_ms(result.p50):>7} {_ms(p99):>7} {ratio:>6} "
            f"{_ms(result.latencies[-1] if result.latencies else None):>7} "
            f"{f'{result.delivered:,}/{result.expected:,}':>19} {memory:>24} "
            f"{_mib(rss_rise(rss), sign=True):>6} {share:>7.0%} {others:>6.0%} "
            f"{result.attempt:>3}"
        )
    slow_head = (
        f"{'server':<8} {'path':<16} {'slow':>4} {'catch-ups':>9} {'closes':>6} "
        f"{'dropped':>8} {'layer drops':>11} {'kernel KiB':>10} "
        f"{'held KiB':>9} {'after KiB':>9} {'socket':>11} {'close code':>10} "
        f"{'caught up':>9} {'gaps':>5} {'lost':>4} {'dups':>4}"
    )
    lines += [
        "",
        "Slow clients (kernel and after: mean per client; held: the most)",
        slow_head,
    ]
    lines.append("-" * len(slow_head))
    for result in results:
        outcomes = result.slow_clients
        if not outcomes:
            continue
        count = len(outcomes)
        log = result.log
        kernel = sum(o.kernel_bytes for o in outcomes) / count / 1024
        after = sum(o.after_bytes for o in outcomes) / count / 1024
        held = max(o.held_bytes for o in outcomes) / 1024
        sockets = ",".join(sorted({o.connection for o in outcomes}))
        lines.append(
            f"{result.server:<8} {result.label:<16} {result.slow:>4} "
            f"{log.catch_ups:>9} {log.closes:>6} {log.dropped_publications:>8} "
            f"{log.layer_dropped:>11} {kernel:>10.0f} {held:>9.0f} {after:>9.0f} "
            f"{sockets:>11} {_codes(outcomes):>10} "
            f"{sum(o.caught_up for o in outcomes):>4}/{count:<4} "
            f"{sum(o.gaps for o in outcomes):>5} "
            f"{sum(o.lost_frames for o in outcomes):>4} "
            f"{sum(o.duplicates for o in outcomes):>4}"
        )
    return "\n".join(lines)
