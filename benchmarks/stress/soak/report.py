"""The soak run's verdict and report.

:func:`checks` judges one cycle's figures against the baseline,
:func:`verdicts` every cycle of a :class:`SoakResult` (with the RSS growth
from the first cycle to the later ones), :func:`report` prints it all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchmarks.stress.soak.fleet import FleetStats
from benchmarks.stress.soak.measure import LogScan, Snapshot

if TYPE_CHECKING:
    from benchmarks.stress.soak.run import Options


@dataclass
class SoakResult:
    """What one layer's run measured.

    Attributes:
        peaks: The figures at the end of each cycle's churn, all open.
        afters: The figures after each cycle, all closed and settled.
        ramp_seconds: How long each cycle's ramp took.
        settle_rss_kib: The server's RSS once a second during each settle
            after a cycle (the baseline's settle first).
        trimmed_kib: The RSS after ``malloc_trim`` at the end, if measured.
        checks: The verdict of each cycle.
    """

    server: str
    layer: str
    baseline: Snapshot
    peaks: list[Snapshot] = field(default_factory=list)
    afters: list[Snapshot] = field(default_factory=list)
    ramp_seconds: list[float] = field(default_factory=list)
    peak_rss_kib: int = 0
    settle_rss_kib: list[list[int]] = field(default_factory=list)
    trimmed_kib: int | None = None
    fleet: FleetStats = field(default_factory=FleetStats)
    log: LogScan = field(default_factory=lambda: LogScan(0, 0, []))
    checks: list[list[Check]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether every check of every cycle passed."""
        return all(check.ok for cycle in self.checks for check in cycle)


@dataclass
class Check:
    """One line of a run's verdict."""

    name: str
    ok: bool
    detail: str


def checks(
    baseline: Snapshot,
    after: Snapshot,
    log: LogScan,
    client_failures: int,
    rss_factor: float,
) -> list[Check]:
    """Return the verdict of one cycle against the baseline."""
    limit = baseline.rss_kib * rss_factor
    result = [
        Check("exceptions", log.errors == 0, f"{log.errors} error lines in the log"),
        Check(
            "client failures",
            client_failures == 0,
            f"{client_failures} failed handshakes, drops or missed deliveries",
        ),
        Check(
            "RSS",
            after.rss_kib <= limit,
            f"{after.rss_kib / 1024:.1f} MiB after, limit {limit / 1024:.1f} MiB "
            f"({rss_factor:.2f} x {baseline.rss_kib / 1024:.1f} MiB)",
        ),
        Check(
            "server fds",
            after.server_fds <= baseline.server_fds,
            f"{after.server_fds} after, {baseline.server_fds} at baseline",
        ),
        Check(
            "client fds",
            after.client_fds <= baseline.client_fds,
            f"{after.client_fds} after, {baseline.client_fds} at baseline",
        ),
    ]
    if baseline.redis_clients is not None:
        result.append(
            Check(
                "Redis clients",
                after.redis_clients <= baseline.redis_clients,
                f"{after.redis_clients} after, {baseline.redis_clients} at baseline",
            )
        )
        result.append(
            Check(
                "Redis keys",
                after.redis_keys <= baseline.redis_keys,
                f"{after.redis_keys} after, {baseline.redis_keys} at baseline",
            )
        )
    consumers = after.app.get("consumers")
    if consumers is not None:
        result.append(
            Check("live consumers", consumers == 0, f"{consumers} after all closed")
        )
    return result


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


_LABEL = 24
_ALLOCATOR_ROWS = [
    ("pymalloc arenas (MiB)", "pymalloc_arenas_kib"),
    ("pymalloc used (MiB)", "pymalloc_used_kib"),
    ("glibc heap used (MiB)", "glibc_used_kib"),
    ("glibc heap free (MiB)", "glibc_free_kib"),
]


def _app_mib(app: dict[str, Any], key: str) -> str | None:
    kib = app.get(key)
    return None if kib is None else _mib(kib)


def _value(snap: Snapshot, row: str) -> str:
    app = snap.app
    values: dict[str, object] = {
        **{row: _app_mib(app, key) for row, key in _ALLOCATOR_ROWS},
        "RSS (MiB)": _mib(snap.rss_kib),
        "server fds": snap.server_fds,
        "client fds": snap.client_fds,
        "Redis clients": snap.redis_clients,
        "Redis keys": snap.redis_keys,
        "live consumers": app.get("consumers"),
        "asyncio tasks": app.get("tasks"),
        "gc objects": app.get("gc_objects"),
    }
    value = values[row]
    return "-" if value is None else str(value)


def table(columns: list[tuple[str, Snapshot]]) -> str:
    """Return the snapshots side by side, one row per figure."""
    rows = [
        "RSS (MiB)",
        "server fds",
        "client fds",
        "Redis clients",
        "Redis keys",
        "live consumers",
        "asyncio tasks",
        "gc objects",
        *(row for row, _ in _ALLOCATOR_ROWS),
    ]
    width = max(12, *(len(name) + 2 for name, _ in columns))
    lines = ["".ljust(_LABEL) + "".join(name.rjust(width) for name, _ in columns)]
    for row in rows:
        cells = [_value(snap, row) for _, snap in columns]
        if all(cell == "-" for cell in cells):
            continue
        lines.append(row.ljust(_LABEL) + "".join(cell.rjust(width) for cell in cells))
    return "\n".join(lines)


def verdicts(
    result: SoakResult, rss_factor: float, growth_factor: float
) -> list[list[Check]]:
    """Return the checks of every cycle of ``result``."""
    first = result.afters[0] if result.afters else None
    every = []
    for after in result.afters:
        verdict = checks(
            result.baseline, after, result.log, result.fleet.failures, rss_factor
        )
        if first is not None and after is not first:
            limit = first.rss_kib * growth_factor
            verdict.append(
                Check(
                    "RSS growth",
                    after.rss_kib <= limit,
                    f"{after.rss_kib / 1024:.1f} MiB after, limit "
                    f"{limit / 1024:.1f} MiB ({growth_factor:.2f} x "
                    "the first cycle's)",
                )
            )
        every.append(verdict)
    return every


def report(result: SoakResult, options: Options) -> str:
    """Return one run's figures and verdict as text."""
    fleet = result.fleet
    failures = ", ".join(f"{k} x{v}" for k, v in fleet.connect_failures.items())
    dropped = ", ".join(f"code {k} x{v}" for k, v in fleet.dropped.items())
    lines = [
        f"== {result.server}, {result.layer} layer: {options.connections} "
        f"connections in {options.rooms} rooms, churn {options.churn} per "
        f"{options.period:g} s for {options.duration:g} s, "
        f"{options.cycles} cycle(s)",
        f"ramp: {', '.join(f'{s:.1f} s' for s in result.ramp_seconds)}; "
        f"opened {fleet.opened}, closed {fleet.closed}, aborted {fleet.aborted}, "
        f"unclean closes {fleet.unclean_closes}",
        f"failed handshakes: {failures or 'none'}; dropped by the server: "
        f"{dropped or 'none'}",
        f"probes {fleet.probes}: {fleet.delivered} of {fleet.expected} "
        f"deliveries, {fleet.missing} missing, {fleet.unexpected} unexpected "
        f"({fleet.late_joins} to members that joined as the probe left)",
        "",
    ]
    columns = [("baseline", result.baseline)]
    for cycle, (peak, after) in enumerate(
        zip(result.peaks, result.afters, strict=False), 1
    ):
        columns += [(f"open {cycle}", peak), (f"after {cycle}", after)]
    lines.append(table(columns))
    lines.append(f"peak RSS sampled: {result.peak_rss_kib / 1024:.1f} MiB")
    for number, samples in enumerate(result.settle_rss_kib):
        every = max(1, len(samples) // 10)
        shown = " ".join(f"{kib / 1024:.1f}" for kib in samples[::every])
        name = f"after {number}" if number else "baseline"
        lines.append(f"RSS in the settle ({name}; MiB every {every} s): {shown}")
    if result.trimmed_kib is not None:
        lines.append(
            f"RSS after malloc_trim(0) at the end: {result.trimmed_kib / 1024:.1f} MiB"
        )
    layer_stats = result.afters[-1].app.get("layer") if result.afters else None
    if layer_stats:
        lines.append(f"layer counters: {layer_stats}")
    held = result.afters[-1].app.get("held_by") if result.afters else None
    for chains in held or []:
        # The chains through a task say what outlives the connection.
        shown = [chain for chain in chains if "<- Task" in chain] or chains[:4]
        lines += ["consumer still alive, held by:"]
        lines += [f"  {chain}" for chain in shown[:4]]
    lines.append(
        f"server log: {result.log.errors} error lines, {result.log.warnings} warnings"
    )
    lines += [f"  {sample}" for sample in result.log.samples]
    for cycle, verdict in enumerate(result.checks, 1):
        for check in verdict:
            state = "PASS" if check.ok else "FAIL"
            lines.append(f"{state}  cycle {cycle} {check.name}: {check.detail}")
    lines.append("verdict: " + ("PASS" if result.ok else "FAIL"))
    return "\n".join(lines)
