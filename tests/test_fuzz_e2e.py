"""Hostile frames against real uvicorn and daphne processes: a short fuzz run.

The full run is ``python -m benchmarks.fuzz_frames``; this one throws every
case at each server with fewer random tries, and checks what the run
promises: the server survives, well-behaved connections keep working, every
outcome is one the case allows (or a known defect, reported), and the log
holds no traceback but those raised on purpose or known.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import fuzz_frames

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[fuzz_frames.ServerResult]:
    logs = tmp_path_factory.mktemp("fuzz")
    return fuzz_frames.run(
        ["uvicorn", "daphne"], count=40, seed=6, time_limit=30, logs=logs, wait=0.5
    )


@pytest.mark.parametrize("index", [0, 1], ids=["uvicorn", "daphne"])
def test_the_server_survives_every_case_and_sentinels_keep_answering(
    results: list[fuzz_frames.ServerResult], index: int
) -> None:
    result = results[index]
    report = fuzz_frames.report([result], count=40, seed=6)
    assert result.died is None, report
    assert result.sentinel_failures == [], report
    assert not result.stopped_early, report
    assert [case.name for case in result.cases] == [
        case.name for case in fuzz_frames.CASES
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["uvicorn", "daphne"])
def test_every_outcome_is_defined_and_the_log_has_no_unexpected_traceback(
    results: list[fuzz_frames.ServerResult], index: int
) -> None:
    result = results[index]
    report = fuzz_frames.report([result], count=40, seed=6)
    assert {case.name: case.unexpected for case in result.cases if case.unexpected} == (
        {}
    ), report
    assert result.unexpected_tracebacks == {}, report
    assert result.ok, report


def test_the_consumers_refusals_arrive_with_their_close_codes(
    results: list[fuzz_frames.ServerResult],
) -> None:
    codes = {
        (result.server, case.name): set(case.outcomes)
        for result in results
        for case in result.cases
    }
    json_cases = [
        ("a binary frame to a JSON consumer", 1003, 4015),
        ("invalid JSON", 1007, 4000),
        ("JSON nested 100,000 deep", 1009, 4013),
        ("100 KiB to a consumer with max_message_size of 64 KiB", 1009, 4013),
    ]
    for name, rfc, daphne in json_cases:
        assert codes["uvicorn", name] == {f"close {rfc}"}
        assert codes["daphne", name] == {f"close {daphne}"}
    for server in ("uvicorn", "daphne"):
        assert codes[server, "a handler that raises (KeyError on {})"] == {"close 1011"}


def test_the_report_lists_what_was_tried_and_the_server_log(
    results: list[fuzz_frames.ServerResult],
) -> None:
    report = fuzz_frames.report(results, count=40, seed=6)
    assert "== uvicorn: OK" in report
    assert "== daphne: OK" in report
    assert "invalid UTF-8 in a text frame" in report
    assert "Tracebacks in the server log" in report
    for result in results:
        assert result.log_path is not None
        assert Path(result.log_path).exists()
        assert "KeyError: 'message'" in "".join(result.tracebacks)
