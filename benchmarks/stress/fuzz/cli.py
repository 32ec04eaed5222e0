"""``python -m benchmarks.stress.fuzz``: options, ``--smoke``, exit status."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.servers import ServerError
from benchmarks.stress.fuzz import smoke
from benchmarks.stress.fuzz.run import CASES, ServerResult, report, run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stress.fuzz",
        description="Throw hostile frames at live uvicorn and daphne servers.",
    )
    parser.add_argument("--servers", default="uvicorn,daphne")
    parser.add_argument(
        "--count", type=int, default=200, help="random tries per random case"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--time-limit", type=float, default=300.0, help="seconds of cases per server"
    )
    parser.add_argument(
        "--wait", type=float, default=2.0, help="seconds a try waits for an answer"
    )
    parser.add_argument("--logs", type=Path, help="where server logs go")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the log reading, then every case with 40 random tries on "
        "each server, and what the run must show",
    )
    return parser.parse_args(argv)


def as_json(results: list[ServerResult]) -> str:
    return json.dumps(
        [
            {
                "server": r.server,
                "ok": r.ok,
                "died": r.died,
                "sentinel_failures": r.sentinel_failures,
                "cases": {
                    c.name: {"outcomes": c.outcomes, "unexpected": c.unexpected}
                    for c in r.cases
                },
                "tracebacks": r.tracebacks,
                "warnings": r.warnings,
            }
            for r in results
        ],
        indent=2,
    )


def main(argv: list[str] | None = None) -> int:
    """Fuzz every server; print the report; return 1 if a server failed a check."""
    options = parse_args(argv)
    if options.smoke:
        if problems := smoke.self_check():
            print("The log reading's self-check failed:", *problems, sep="\n- ")
            return 1
        options.count, options.seed = smoke.COUNT, smoke.SEED
        options.time_limit, options.wait = smoke.TIME_LIMIT, smoke.WAIT
    servers = [name for name in options.servers.split(",") if name]
    logs = options.logs or Path(tempfile.mkdtemp(prefix="fuzz-frames-"))
    logs.mkdir(parents=True, exist_ok=True)
    try:
        results = run(
            servers,
            options.count,
            options.seed,
            options.time_limit,
            logs,
            options.wait,
        )
    except ServerError as error:
        print(f"A server failed to start: {error}", file=sys.stderr)
        return 2
    print(
        as_json(results)
        if options.json
        else report(results, options.count, options.seed)
    )
    if options.smoke:
        found = smoke.problems(results, [case.name for case in CASES])
        print("\n".join(f"SMOKE FAIL  {problem}" for problem in found) or "SMOKE PASS")
        return 1 if found else 0
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
