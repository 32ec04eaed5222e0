"""The figures of a ``benchmarks.stress.stream_faults`` run, and its table.

:func:`summarise` compares every client with what was published and sums
what happened per server; :func:`report` lays it out with the suite's
table helpers (``benchmarks._report``).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import report as _report

if TYPE_CHECKING:
    from benchmarks.stress.stream_faults.client import Client
    from benchmarks.stress.stream_faults.state import Options, Publisher, Run, Slot

__all__ = ["ROWS", "Outcome", "report", "summarise"]


@dataclass
class Outcome:
    """A run's figures, per column ("all" and each server), and its failures."""

    figures: dict[str, dict[str, float | None]]
    failures: list[str]
    logs: Path
    notes: list[str] = field(default_factory=list)
    machine: str = ""

    @property
    def total(self) -> dict[str, float | None]:
        return self.figures["all"]


ROWS = [
    _report.Row("clients", "clients", "count"),
    _report.Row("published", "publications", "count"),
    _report.Row("rate", "  publish rate achieved, msgs/s", "rate"),
    _report.Row("expected", "expected deliveries", "count"),
    _report.Row("delivered", "delivered (once, right payload)", "count"),
    _report.Row("missing", "missing, unsignalled", "count"),
    _report.Row("duplicates", "duplicates", "count"),
    _report.Row("gaps", "skipped or out of order, seen live", "count"),
    _report.Row("wrong_payload", "wrong payload", "count"),
    _report.Row("signalled", "signalled lost (the client was told)", "count"),
    _report.Row("lost_outside_window", "signals: outside_window", "count"),
    _report.Row("lost_epoch_changed", "  epoch_changed", "count"),
    _report.Row("lost_invalid_position", "  invalid_position", "count"),
    _report.Row("lost_frames", "  of which lost frames (live)", "count"),
    _report.Row("unjustified", "  not justified (too early)", "count"),
    _report.Row("connects", "connections", "count"),
    _report.Row("reconnects", "reconnects", "count"),
    _report.Row("closed_reset", "  after a reset by the client", "count"),
    _report.Row("closed_clean", "  after a clean close by the client", "count"),
    _report.Row("closed_server", "  after the server closed or died", "count"),
    _report.Row("connect_failures", "failed connection attempts", "count"),
    _report.Row("resumed", "resumes recovered", "count"),
    _report.Row("not_resumed", "resumes not recovered (signalled)", "count"),
    _report.Row("catch_up_p50", "catch-up p50, ms", "ms"),
    _report.Row("catch_up_p99", "catch-up p99, ms", "ms"),
    _report.Row("catch_up_max", "catch-up max, ms", "ms"),
    _report.Row("interrupted", "catch-ups cut by the next drop", "count"),
    _report.Row("unanswered", "connections ended before subscribed", "count"),
    _report.Row("stalls", "connections stalled (silent 2 s, behind)", "count"),
    _report.Row("stall_max", "  longest silence while behind, ms", "ms"),
    _report.Row("stuck", "  never resumed (silent until closed)", "count"),
    _report.Row("redis_kills", "Redis kills (connections cut)", "count"),
    _report.Row("redis_killed", "  connections cut", "count"),
    _report.Row("restarts", "server kill -9 and restarts", "count"),
    _report.Row("flushes", "store flushes (new epochs)", "count"),
    _report.Row("undrained", "clients not drained at the end", "count"),
    _report.Row("protocol_errors", "protocol errors", "count"),
    _report.Row("server_pubsub", "server log: pub/sub connection down", "count"),
    _report.Row("server_resyncs", "  streams resynced after it", "count"),
    _report.Row("server_gaps", "  gaps noticed in live offsets", "count"),
    _report.Row("server_warnings", "  other warnings and errors", "count"),
]


# The rows of each transport's column (its clients, whatever the server).
TRANSPORT_KEYS = (
    "clients",
    "expected",
    "delivered",
    "missing",
    "duplicates",
    "gaps",
    "wrong_payload",
    "signalled",
    "connects",
    "undrained",
    "protocol_errors",
)


def _catch_up_figures(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"catch_up_p50": None, "catch_up_p99": None, "catch_up_max": None}
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "catch_up_p50": statistics.median(ordered) * 1000,
        "catch_up_p99": p99 * 1000,
        "catch_up_max": ordered[-1] * 1000,
    }


def _server_log(slot: Slot) -> dict[str, float | None]:
    """Count the warnings (and errors) and the gaps noticed in a server's logs."""
    counts: dict[str, float | None] = dict.fromkeys(
        ("server_pubsub", "server_resyncs", "server_gaps", "server_warnings"), 0
    )
    for server in slot.incarnations:
        for line in server.output.splitlines():
            level, _, rest = line.partition(" ")
            if "Redis pub/sub" in rest:
                # The layer's subscriber says so on each Redis kill.
                key = "server_pubsub" if "is down" in rest else ""
            elif level in ("WARNING", "ERROR", "CRITICAL"):
                key = "server_warnings"
            elif level == "INFO" and ": Gap in " in rest:
                key = "server_gaps"
            elif level == "INFO" and "may have been lost" in rest:
                key = "server_resyncs"
            else:
                continue
            if key:
                counts[key] = (counts[key] or 0) + 1
    return counts


def summarise(
    run: Run, clients: list[Client], elapsed: float, publisher: Publisher
) -> Outcome:
    """Compare every client with what was published; return the figures."""
    totals: Counter[str] = Counter()
    losses: Counter[str] = Counter()
    errors: list[str] = []
    by_transport: dict[str, Counter[str]] = {}
    for client in clients:
        per_transport = by_transport.setdefault(client.transport, Counter())
        per_transport["clients"] += 1
        per_transport["undrained"] += not client.drained
        per_transport["connects"] += sum(s.connects for s in client.stats.values())
        for stream, track in client.tracks.items():
            counts = track.compare(publisher.ledgers[stream])
            totals.update(counts)
            per_transport.update(counts)
            per_transport["signals"] += sum(track.losses.values())
            losses.update(track.losses)
            errors.extend(track.errors)
    published = sum(len(ledger.published) for ledger in publisher.ledgers.values())
    figures: dict[str, dict[str, float | None]] = {"all": {}}
    every: list[float] = []
    for slot in run.slots:
        stats = [client.stats[slot.name] for client in clients]
        column: dict[str, float | None] = {
            "connects": sum(s.connects for s in stats),
            "connect_failures": sum(s.connect_failures for s in stats),
            "resumed": sum(s.resumes["recovered"] for s in stats),
            "not_resumed": sum(
                sum(s.resumes.values()) - s.resumes["recovered"] for s in stats
            ),
            "interrupted": sum(s.interrupted for s in stats),
            "unanswered": sum(s.unanswered for s in stats),
            "stalls": sum(s.stalls for s in stats),
            "stuck": sum(s.stuck for s in stats),
            "closed_reset": sum(s.closed["reset"] for s in stats),
            "closed_clean": sum(s.closed["clean"] for s in stats),
            "closed_server": sum(
                n
                for s in stats
                for how, n in s.closed.items()
                if how.startswith("server_closed")
            ),
        }
        column.update(_server_log(slot))
        stalls = [t for s in stats for t in s.stall_seconds]
        column["stall_max"] = max(stalls, default=0.0) * 1000
        seconds = [t for s in stats for t in s.catch_ups]
        every += seconds
        column.update(_catch_up_figures(seconds))
        figures[slot.name] = column
    total = figures["all"]
    for key in figures[run.slots[0].name]:
        if not key.startswith(("catch_up", "stall_max")):
            total[key] = sum(figures[s.name][key] or 0 for s in run.slots)
    longest = [figures[s.name]["stall_max"] for s in run.slots]
    total["stall_max"] = max((t or 0.0 for t in longest), default=0.0)
    total.update(_catch_up_figures(every))
    total["reconnects"] = (total["connects"] or 0) - len(clients)
    total["published"] = published
    total["rate"] = published / elapsed if elapsed else None
    for key in ("expected", "delivered", "missing", "duplicates", "wrong_payload"):
        total[key] = totals[key]
    total["signalled"] = totals["signalled"]
    for reason in ("outside_window", "epoch_changed", "invalid_position"):
        total[f"lost_{reason}"] = losses[reason]
    total["unjustified"] = totals["unjustified"]
    total["lost_frames"] = totals["lost_frames"]
    total["flushes"] = run.flushes
    total["redis_kills"] = len(run.redis_kills)
    total["redis_killed"] = sum(run.redis_kills)
    total["restarts"] = run.restarts
    total["undrained"] = sum(1 for c in clients if not c.drained)
    total["protocol_errors"] = totals["protocol_errors"]
    total["gaps"] = totals["gaps"]
    for transport, counts in by_transport.items():
        figures[f"{transport} clients"] = {key: counts[key] for key in TRANSPORT_KEYS}

    failures = []
    for key, what in (
        ("missing", "publications lost without a signal"),
        ("gaps", "publications skipped with no signal, seen live"),
        ("duplicates", "publications received twice"),
        ("wrong_payload", "publications with another position's payload"),
        ("unexpected", "publications received that nobody expected"),
        ("unjustified", "losses signalled while the history was there"),
        ("never_subscribed", "clients that never subscribed"),
        ("protocol_errors", "protocol errors"),
    ):
        if totals[key]:
            failures.append(f"{totals[key]} {what}")
    if total["stuck"]:
        failures.append(
            f"{total['stuck']} connections stopped delivering while their client "
            "was behind, and never resumed (silent until the server closed them "
            "or the run ended)"
        )
    if total["undrained"]:
        failures.append(f"{total['undrained']} clients did not catch up at the end")
    if publisher.errors:
        failures.append(f"{publisher.errors} publishes failed")
    failures += errors[:5]
    failing = [t for c in clients for t in c.tracks.values() if t.missing]
    for track in failing[:3]:
        failures.append(
            f"e.g. a client of {track.stream} missed {_ranges(track.missing)}; "
            "its last events:\n      " + "\n      ".join(track.events)
        )
    notes = []
    stalled = sorted(
        (c for c in clients if any(s.stalls for s in c.stats.values())),
        key=lambda c: -sum(s.stuck for s in c.stats.values()),
    )
    for client in stalled[:2]:
        track = next(iter(client.tracks.values()))
        notes.append(
            f"e.g. a stalled client of {track.stream}, its last events:\n      "
            + "\n      ".join(track.events)
        )
    if notes or failures:
        notes.append("Faults: " + "; ".join(run.events))
    return Outcome(figures, failures, run.logs, notes)


def _ranges(positions: list[tuple[str, int]]) -> str:
    """Return ``[(e, 1), (e, 2), (e, 3), (e, 7)]`` as ``e:1-3, e:7``."""
    parts: list[str] = []
    run: list[tuple[str, int]] = []
    for position in [*positions, ("", -1)]:
        if run and (position[0] != run[-1][0] or position[1] != run[-1][1] + 1):
            low, high = run[0][1], run[-1][1]
            parts.append(f"{run[0][0]}:{low}" + (f"-{high}" if high != low else ""))
            run = []
        run.append(position)
    return ", ".join(parts)


def report(outcome: Outcome, options: Options) -> str:
    """Return the run's table and verdict, as printed."""
    columns = [("all", "servers")] + [
        tuple(name.split(" ", 1)) if name.endswith(" clients") else (name, "server")
        for name in outcome.figures
        if name != "all"
    ]
    results = {
        (name, app): outcome.figures[name if app != "clients" else f"{name} {app}"]
        for name, app in columns
    }
    lines = [
        outcome.machine,
        f"{options.clients} clients ({', '.join(options.transports)} in turn), "
        f"{options.streams} stream(s), "
        f"{options.duration:g} s at {options.rate:g} msgs/s, history "
        f"{options.history} per stream ({options.window_seconds:.1f} s); a drop "
        f"every {options.drop_every:g} s per client on average "
        f"({options.clean_close:.0%} clean, {options.long_away:.0%} away past the "
        f"window); Redis kill every {options.kill_redis_every or '-'} s; "
        f"restart every {options.restart_every or '-'} s; flush every "
        f"{options.flush_every or '-'} s",
        "",
        _report.table(results, columns, ROWS),
        "",
    ]
    checks = [
        _report.Check("missing", outcome.total["missing"], 0, at_most=True),
        _report.Check("duplicates", outcome.total["duplicates"], 0, at_most=True),
    ]
    verdict = "PASS" if not outcome.failures else "FAIL"
    lines.append(f"{verdict}  " + "; ".join(str(check) for check in checks))
    lines += [f"  {failure}" for failure in outcome.failures]
    lines += outcome.notes
    return "\n".join(lines)
