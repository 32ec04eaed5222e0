"""``python -m benchmarks.stress.slow_clients``: options, ``--smoke``, exit status."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import sys
from pathlib import Path

from benchmarks.servers import ServerError, pin
from benchmarks.stress.slow_clients import run as run_module, smoke
from benchmarks.stress.slow_clients.report import Limits
from benchmarks.stress.slow_clients.run import PATHS, Options, report, run


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def parse_args(argv: list[str] | None) -> Options:
    """Return the run's options from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stress.slow_clients",
        description=(run_module.__doc__ or "").split("\n\n")[0],
    )
    defaults = Options()
    limits = defaults.limits
    add = parser.add_argument
    add("--readers", type=int, default=defaults.readers)
    add("--slow", default="1,10", help="slow-client counts, one run each")
    add("--duration", type=float, default=defaults.duration, help="seconds")
    add("--rate", type=float, default=defaults.rate, help="publications a second")
    add("--size", type=int, default=defaults.size, help="padding characters")
    add("--servers", default=",".join(defaults.servers))
    add("--paths", default=",".join(defaults.paths))
    add("--max-queued", type=int, default=defaults.max_queued)
    add("--capacity", type=int, default=defaults.capacity)
    add("--history", type=int, default=defaults.history, help="kept per stream")
    add("--expiry", type=float, default=defaults.expiry, help="layer expiry, s")
    add(
        "--linger",
        type=float,
        default=defaults.linger,
        help="seconds the slow clients stay stalled after the publishing",
    )
    add("--rcvbuf", type=int, default=defaults.rcvbuf)
    add("--mss", type=int, default=defaults.mss, help="0: the loopback MSS")
    add("--latency-factor", type=float, default=limits.latency_factor)
    add("--latency-floor-ms", type=float, default=limits.latency_floor_ms)
    add("--rss-slack-mib", type=float, default=limits.rss_slack_mib)
    add(
        "--retries",
        type=int,
        default=defaults.retries,
        help="runs again a run over a latency or RSS limit",
    )
    add("--redis-url", default=defaults.redis_url)
    add("--logs", type=Path, default=None, help="keep server logs here")
    add("--no-pin", action="store_true", help="do not pin server and clients")
    add(
        "--smoke",
        action="store_true",
        help="check the judgement on planted figures, then a short run of "
        "both stream policies on uvicorn",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        return dataclasses.replace(
            smoke.OPTIONS, redis_url=args.redis_url, logs=args.logs, smoke=True
        )
    servers = tuple(name for name in args.servers.split(",") if name)
    paths = tuple(name for name in args.paths.split(",") if name)
    for name in servers:
        if name not in ("uvicorn", "daphne"):
            parser.error(f"Expected servers among uvicorn,daphne, got {name!r}.")
    for name in paths:
        if name not in PATHS:
            parser.error(f"Expected paths among {','.join(PATHS)}, got {name!r}.")
    slow = _counts(args.slow)
    if not slow or min(slow) < 1 or args.readers < 1 or args.rate <= 0:
        parser.error("--slow, --readers and --rate must be positive.")
    return Options(
        readers=args.readers,
        slow=slow,
        duration=args.duration,
        rate=args.rate,
        size=args.size,
        servers=servers,
        paths=paths,
        max_queued=args.max_queued,
        capacity=args.capacity,
        history=args.history,
        expiry=args.expiry,
        linger=args.linger,
        retries=args.retries,
        rcvbuf=args.rcvbuf,
        mss=args.mss,
        redis_url=args.redis_url,
        logs=args.logs,
        pin=not args.no_pin,
        limits=Limits(
            latency_factor=args.latency_factor,
            latency_floor_ms=args.latency_floor_ms,
            rss_slack_mib=args.rss_slack_mib,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """Run every case, print the tables; return 1 if a run failed."""
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if options.smoke and (problems := smoke.self_check()):
        print("The judgement's self-check failed:", *problems, sep="\n- ")
        return 1
    if options.pin and (os.cpu_count() or 1) >= 2:
        pin(1)  # the servers run on core 0
    try:
        outcome = asyncio.run(run(options))
    except ServerError as error:
        print(f"A server failed: {error}", file=sys.stderr)
        return 2
    print(report(outcome, options))
    failed = smoke.problems(outcome) if options.smoke else outcome.failures
    if options.smoke:
        print("\n".join(f"SMOKE FAIL  {problem}" for problem in failed) or "SMOKE PASS")
    if failed or options.logs is not None:
        print(f"Server logs: {outcome.logs}")
    else:
        shutil.rmtree(outcome.logs, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
