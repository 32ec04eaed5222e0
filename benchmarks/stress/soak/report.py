"""The soak run's verdict and report.

The soak judges leaks, not the allocator. Memory an allocator keeps for
reuse after a wave of connections is reused by the next wave; a leak grows
again with every wave. So:

- after every cycle, the server's file descriptors, the load client's,
  the server's Redis connections and keys, and the consumers still alive
  must be back to the baseline's (taken after the warm-up), and the
  server's log must hold no error;
- once warmed up, the RSS at the end of the last cycle may exceed the RSS
  at the end of cycle ``rss_from`` (2) by at most ``rss_growth`` (5%). The
  RSS is not compared with the baseline: the first waves grow the
  allocator's pools, which a process keeps.

:func:`verdicts` returns the checks, :func:`report` prints everything, and
:func:`self_check` plants leaks in made-up figures to see them caught.
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
        checks: The verdict of each cycle; the RSS growth is judged with
            the last one.
    """

    server: str
    layer: str
    baseline: Snapshot
    peaks: list[Snapshot] = field(default_factory=list)
    afters: list[Snapshot] = field(default_factory=list)
    ramp_seconds: list[float] = field(default_factory=list)
    peak_rss_kib: int = 0
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


def _back(name: str, after: int | None, baseline: int | None) -> Check:
    """Return whether a count is back to (or under) the baseline's."""
    ok = after is not None and baseline is not None and after <= baseline
    return Check(name, ok, f"{after} after, {baseline} at baseline")


def checks(baseline: Snapshot, after: Snapshot) -> list[Check]:
    """Return what must be back to the baseline after one cycle."""
    result = [
        _back("server fds", after.server_fds, baseline.server_fds),
        _back("client fds", after.client_fds, baseline.client_fds),
    ]
    if baseline.redis_clients is not None:
        result.append(
            _back("Redis clients", after.redis_clients, baseline.redis_clients)
        )
        result.append(_back("Redis keys", after.redis_keys, baseline.redis_keys))
    consumers = after.app.get("consumers")
    result.append(
        Check("live consumers", consumers == 0, f"{consumers} after all closed")
    )
    return result


def rss_growth_check(
    afters: list[Snapshot], rss_from: int, rss_growth: float
) -> Check | None:
    """Return the RSS check of the last cycle against cycle ``rss_from``.

    ``None`` when the run has no cycle after ``rss_from``.
    """
    if len(afters) <= rss_from:
        return None
    reference, last = afters[rss_from - 1].rss_kib, afters[-1].rss_kib
    limit = reference * (1 + rss_growth)
    return Check(
        "RSS growth",
        last <= limit,
        f"{last / 1024:.1f} MiB after cycle {len(afters)}, limit {limit / 1024:.1f} "
        f"MiB ({reference / 1024:.1f} MiB after cycle {rss_from} + {rss_growth:.0%})",
    )


def verdicts(result: SoakResult, rss_from: int, rss_growth: float) -> list[list[Check]]:
    """Return the checks of every cycle of ``result``."""
    every = [checks(result.baseline, after) for after in result.afters]
    if every:
        fleet = result.fleet
        every[-1] += [
            Check(
                "exceptions",
                result.log.errors == 0,
                f"{result.log.errors} error lines in the log",
            ),
            Check(
                "client failures",
                fleet.failures == 0,
                f"{fleet.failures} failed handshakes, drops or missed deliveries",
            ),
        ]
        growth = rss_growth_check(result.afters, rss_from, rss_growth)
        if growth is not None:
            every[-1].append(growth)
    return every


def _value(snap: Snapshot, row: str) -> str:
    app = snap.app
    values: dict[str, object] = {
        "RSS (MiB)": f"{snap.rss_kib / 1024:.1f}",
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
    ]
    width = max(10, *(len(name) + 2 for name, _ in columns))
    lines = ["".ljust(16) + "".join(name.rjust(width) for name, _ in columns)]
    for row in rows:
        cells = [_value(snap, row) for _, snap in columns]
        if all(cell == "-" for cell in cells):
            continue
        lines.append(row.ljust(16) + "".join(cell.rjust(width) for cell in cells))
    return "\n".join(lines)


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
    columns += [(f"after {n}", after) for n, after in enumerate(result.afters, 1)]
    lines.append(table(columns))
    peaks = ", ".join(f"{peak.rss_kib / 1024:.1f}" for peak in result.peaks)
    lines.append(f"RSS with every connection open, per cycle (MiB): {peaks}")
    lines.append(f"peak RSS sampled: {result.peak_rss_kib / 1024:.1f} MiB")
    layer_stats = result.afters[-1].app.get("layer") if result.afters else None
    if layer_stats:
        lines.append(f"layer counters: {layer_stats}")
    for cycle, after in enumerate(result.afters, 1):
        for chains in after.app.get("held_by") or []:
            # The chains through a task or a timer say what outlives the
            # connection.
            shown = [
                chain for chain in chains if "<- Task" in chain or "Timer" in chain
            ] or chains[:4]
            lines += [f"after cycle {cycle}, a consumer still alive, held by:"]
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


def self_check() -> list[str]:
    """Return what is wrong with the verdict on planted leaks (empty: nothing)."""

    def snap(rss_mib: float, fds: int = 10, consumers: int = 0) -> Snapshot:
        app: dict[str, Any] = {"consumers": consumers}
        return Snapshot(int(rss_mib * 1024), fds, 20, 2, 0, app)

    def verdict(afters: list[Snapshot]) -> dict[str, bool]:
        result = SoakResult("uvicorn", "redis", snap(50), afters=afters)
        passed: dict[str, bool] = {}
        for cycle in verdicts(result, rss_from=2, rss_growth=0.05):
            for check in cycle:
                passed[check.name] = passed.get(check.name, True) and check.ok
        return passed

    problems = []
    # The allocator's pools grow in the first waves, then stay: no leak.
    settled = verdict([snap(80), snap(90), snap(91), snap(92), snap(93)])
    if not all(settled.values()):
        problems.append(f"Expected a settled run to pass, got {settled}.")
    leaking = verdict([snap(80), snap(90), snap(93), snap(96), snap(99)])
    if leaking.get("RSS growth", True):
        problems.append("Expected 10% growth from cycle 2 to 5 to fail.")
    for name, planted in [
        ("server fds", snap(80, fds=11)),
        ("live consumers", snap(80, consumers=1)),
    ]:
        if verdict([planted]).get(name, True):
            problems.append(f"Expected {name} above the baseline to fail.")
    return problems
