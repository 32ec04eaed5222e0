"""``python -m benchmarks.stress.stream_faults``: options, ``--smoke``, exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from pathlib import Path

from benchmarks.servers import ServerError
from benchmarks.stress.stream_faults import run as run_module, smoke
from benchmarks.stress.stream_faults.report import report
from benchmarks.stress.stream_faults.run import run
from benchmarks.stress.stream_faults.state import TRANSPORTS, Options


def _seconds_or_none(text: str) -> float | None:
    value = float(text)
    return value if value > 0 else None


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    """Return the run's options from the command line, and whether to smoke."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stress.stream_faults",
        description=(run_module.__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the bookkeeping on planted faults, then two short runs "
        "(drops and Redis cuts; flushes and a restart) instead of one",
    )
    defaults = Options()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="publications per second"
    )
    parser.add_argument("--streams", type=int, default=defaults.streams)
    parser.add_argument("--servers", default=",".join(defaults.servers))
    parser.add_argument(
        "--transports",
        default=",".join(defaults.transports),
        help="the clients take these in turn: websocket,sse,poll",
    )
    parser.add_argument(
        "--history", type=int, default=defaults.history, help="kept per stream"
    )
    parser.add_argument(
        "--drop-every",
        type=float,
        default=defaults.drop_every,
        help="mean seconds between a client's drops",
    )
    parser.add_argument(
        "--clean-close",
        type=float,
        default=defaults.clean_close,
        help="share of drops that close cleanly (the rest reset the TCP connection)",
    )
    parser.add_argument(
        "--long-away",
        type=float,
        default=defaults.long_away,
        help="share of drops that stay away past the history window",
    )
    parser.add_argument(
        "--kill-redis-every",
        type=_seconds_or_none,
        default=defaults.kill_redis_every,
        help="seconds between cuts of the servers' Redis connections (0: never)",
    )
    parser.add_argument(
        "--restart-every",
        type=_seconds_or_none,
        default=defaults.restart_every,
        help="seconds between kill -9 and restart of a server (0: never)",
    )
    parser.add_argument(
        "--flush-every",
        type=_seconds_or_none,
        default=defaults.flush_every,
        help="seconds between flushes of the store, new epochs (0: never)",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=defaults.client_processes,
        help="processes the SSE and long-polling clients run in (0: this one)",
    )
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout)
    parser.add_argument("--redis-url", default=defaults.redis_url)
    parser.add_argument("--logs", type=Path, default=None, help="keep server logs here")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    servers = tuple(name for name in args.servers.split(",") if name)
    for name in servers:
        if name not in ("uvicorn", "daphne"):
            parser.error(f"Expected servers among uvicorn,daphne, got {name!r}.")
    transports = tuple(name for name in args.transports.split(",") if name)
    for name in transports:
        if name not in TRANSPORTS:
            parser.error(f"Expected transports among {TRANSPORTS}, got {name!r}.")
    if not transports:
        parser.error("--transports must name at least one transport.")
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.history < 1:
        parser.error("--clients, --rate, --duration and --history must be positive.")
    options = Options(
        clients=args.clients,
        duration=args.duration,
        rate=args.rate,
        streams=args.streams,
        servers=servers,
        transports=transports,
        client_processes=max(0, args.client_processes),
        history=args.history,
        drop_every=args.drop_every,
        clean_close=args.clean_close,
        long_away=args.long_away,
        kill_redis_every=args.kill_redis_every,
        restart_every=args.restart_every,
        flush_every=args.flush_every,
        drain_timeout=args.drain_timeout,
        redis_url=args.redis_url,
        logs=args.logs,
        seed=args.seed,
    )
    return options, args.smoke


def _run_once(options: Options) -> tuple[int, list[str]]:
    """Run ``options``, print the report; return the status and failures."""
    try:
        outcome = asyncio.run(run(options))
    except ServerError as error:
        print(f"A server failed: {error}", file=sys.stderr)
        return 2, [str(error)]
    print(report(outcome, options))
    if outcome.failures or options.logs is not None:
        print(f"Server logs: {outcome.logs}")
    else:
        shutil.rmtree(outcome.logs, ignore_errors=True)
    return (1 if outcome.failures else 0), outcome.failures


def _smoke(options: Options) -> int:
    problems = smoke.self_check()
    if problems:
        print("The bookkeeping's self-check failed:", *problems, sep="\n- ")
        return 1
    common = {
        "servers": options.servers,
        "transports": options.transports,
        "client_processes": options.client_processes,
        "redis_url": options.redis_url,
        "logs": options.logs,
    }
    found = []
    for planned, expected in smoke.RUNS:
        smoke_options = smoke.with_common(planned, **common)
        try:
            outcome = asyncio.run(run(smoke_options))
        except ServerError as error:
            found.append(f"A server failed: {error}")
            continue
        print(report(outcome, smoke_options))
        found += smoke.problems(outcome, smoke_options, expected)
        if not outcome.failures and options.logs is None:
            shutil.rmtree(outcome.logs, ignore_errors=True)
    print("\n".join(f"SMOKE FAIL  {problem}" for problem in found) or "SMOKE PASS")
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    """Run once (or ``--smoke``), print the table; return 1 on any failure."""
    options, smoke_run = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if smoke_run:
        return _smoke(options)
    status, _ = _run_once(options)
    return status


if __name__ == "__main__":
    sys.exit(main())
