"""``--smoke``: check the log reading on a planted log, then a short run of each server.

Every case runs on uvicorn and daphne with 40 random tries each; the run
must show what the full run promises: the server survives, the sentinels
keep answering, every outcome is one the case allows, the log holds no
traceback but those raised on purpose or known, and the consumers'
refusals arrive with their close codes.
"""

from __future__ import annotations

from benchmarks.stress.fuzz.run import ServerResult, read_log

# A try waits as long as in the full run: on a busy machine a server may
# take a second to answer 10,000 fragments.
COUNT, SEED, TIME_LIMIT, WAIT = 40, 6, 60.0, 2.0

_PLANTED_LOG = """\
WARNING django_realtime.consumers: /ws/json/ sent 12 bytes
Traceback (most recent call last):
  File "app.py", line 1, in receive
KeyError: 'message'
Traceback (most recent call last):
  File "x.py", line 2, in f
builtins.ZeroDivisionError: division by zero
"""

# (case, the close code on uvicorn (the RFC's), the one daphne can send)
_REFUSALS = [
    ("a binary frame to a JSON consumer", 1003, 4015),
    ("invalid JSON", 1007, 4000),
    ("JSON nested 100,000 deep", 1009, 4013),
    ("100 KiB to a consumer with max_message_size of 64 KiB", 1009, 4013),
]


def self_check() -> list[str]:
    """Return what the log reading misses in a planted log (empty: nothing)."""
    tracebacks, warnings = read_log(_PLANTED_LOG)
    result = ServerResult("uvicorn", tracebacks=tracebacks, warnings=warnings)
    problems = []
    if set(result.unexpected_tracebacks) != {"ZeroDivisionError: division by zero"}:
        problems.append(
            "Expected the ZeroDivisionError alone to be unexpected, got "
            f"{dict(result.unexpected_tracebacks)}."
        )
    if sum(warnings.values()) != 1 or result.ok:
        problems.append(f"Expected one warning and a failed run, got {warnings}.")
    return problems


def problems(results: list[ServerResult], case_names: list[str]) -> list[str]:
    """Return what the short run did not show."""
    found = []
    for result in results:
        name = result.server
        if result.died is not None:
            found.append(f"{name} died: {result.died}")
        found += [f"{name} sentinel: {failure}" for failure in result.sentinel_failures]
        if result.stopped_early or [case.name for case in result.cases] != case_names:
            found.append(f"{name} did not run every case")
        found += [
            f"{name} {case.name}: unexpected {dict(case.unexpected)}"
            for case in result.cases
            if case.unexpected
        ]
        found += [f"{name} traceback: {line}" for line in result.unexpected_tracebacks]
        if "KeyError: 'message'" not in "".join(result.tracebacks):
            found.append(f"{name}: the handler that raises left no traceback")
        codes = {case.name: set(case.outcomes) for case in result.cases}
        for case, rfc, daphne in _REFUSALS:
            code = rfc if name == "uvicorn" else daphne
            if codes.get(case) != {f"close {code}"}:
                found.append(
                    f"{name} {case}: expected close {code}, got {codes.get(case)}"
                )
        raising = "a handler that raises (KeyError on {})"
        if codes.get(raising) != {"close 1011"}:
            found.append(
                f"{name} {raising}: expected close 1011, got {codes.get(raising)}"
            )
    return found
