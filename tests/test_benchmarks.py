"""Keep the benchmark suite working: a quick real run, its servers, its report.

The figures themselves are not asserted (the machine is shared and busy);
what is asserted is that every measurement produced a number, that the
targets are judged, and that no server outlives the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import _report
from benchmarks._servers import ROOT, ServerError, serving
from benchmarks.suite import held_points

SMOKE_TIMEOUT = 280


def _processes_with_env(marker: str) -> list[int]:
    """Return the pids of processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _table_rows(output: str) -> dict[str, list[str]]:
    """Map each table row's title to its cells (cells hold no spaces)."""
    lines = output.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("-----")) - 1
    columns = lines[top].split().count("uvicorn")
    rows = {}
    for line in lines[top + 2 :]:
        if not line.strip():
            break
        words = line.split()
        rows[" ".join(words[: -columns or None])] = words[-columns:]
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.timeout(SMOKE_TIMEOUT + 20)
def test_quick_run_on_uvicorn_prints_numbers_and_judges_the_targets(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_SETTINGS_MODULE"
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--servers=uvicorn",
            "--layers=memory,channels-redis",
            f"--logs={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr[-5000:]
    assert _processes_with_env(f"BENCH_RUN={tmp_path}") == []

    rows = _table_rows(output)
    header = output.splitlines()
    assert "server on core 0, client on core 1" in header[1]
    every_app = [
        "echo async, msgs/s",
        "handshakes/s, ramp 0 to 600",
        "handshakes/s at 300 held",
        "handshakes/s at 600 held",
        "RSS KiB per idle conn, 600",
        "fan-out memory paced, deliveries/s",
        "fan-out memory burst, deliveries/s",
        "fan-out memory burst, p99 ms",
    ]
    for title in every_app:
        assert len(rows[title]) == 3, (title, rows.get(title))
        assert all(_number(cell) > 0 for cell in rows[title]), (title, output)
    frameworks = [
        "echo sync, msgs/s",
        "connects/s, session + auth",
        "fan-out channels-redis burst, deliveries/s",
    ]
    for title in frameworks:
        raw, ours, channels = rows[title]
        assert raw == "-"
        assert _number(ours) > 0, (title, output)
        assert _number(channels) > 0, (title, output)
    assert rows["100 joins at once, channels-redis: failed"][0] == "-"
    assert "ERR" not in output

    verdicts = [
        line for line in output.splitlines() if line.startswith(("PASS", "MISS"))
    ]
    letters = {line.split("(", 1)[1][0] for line in verdicts}
    assert letters == set("abcdefg"), output


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_server_is_pinned_and_killed_even_when_the_measurement_fails(
    tmp_path: Path,
) -> None:
    cpu = max(os.sched_getaffinity(0))
    app = "benchmarks.raw_app:application"
    started: list[subprocess.Popen[bytes]] = []

    def measure() -> None:
        with serving("uvicorn", app, {}, cpu, tmp_path / "uvicorn.log") as server:
            started.append(server.process)
            assert os.sched_getaffinity(server.pid) == {cpu}
            assert server.rss_kib() > 1_000
            assert server.cpu_seconds() > 0
            raise RuntimeError("measurement failed")

    with pytest.raises(RuntimeError, match="measurement failed"):
        measure()

    assert started[0].poll() is not None


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_server_that_dies_is_reported_with_its_output(tmp_path: Path) -> None:
    app = "benchmarks.raw_app:application"
    with serving("uvicorn", app, {}, None, tmp_path / "uvicorn.log") as server:
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(timeout=10)

        with pytest.raises(ServerError, match=f"uvicorn died with -{signal.SIGKILL}"):
            server.check_alive()


# -- the report, without servers ---------------------------------------------------


def test_held_points_are_5000_10000_and_the_top_or_halves_of_a_small_run() -> None:
    assert held_points(10_000) == [5_000, 10_000]
    assert held_points(19_000) == [5_000, 10_000, 19_000]
    assert held_points(600) == [300, 600]


def _results(
    ours: dict[str, float | None],
    raw: dict[str, float | None],
    channels: dict[str, float | None],
) -> _report.Results:
    return {
        ("uvicorn", "ours"): ours,
        ("uvicorn", "raw"): raw,
        ("uvicorn", "channels"): channels,
    }


def test_targets_pass_when_every_ratio_of_the_issue_is_met() -> None:
    results = _results(
        ours={
            "echo_async": 21_000,
            "echo_sync": 13_000,
            "rss": 27.0,
            "hs_ramp": 2_000,
            "hs_at_5000": 2_000,
            "hs_at_19000": 1_950,
            "auth": 1_000,
            "fan_memory_burst_rate": 100_000,
            "fan_memory_paced_p99": 10.0,
            "fan_memory_paced_lost": 0,
            "fan_memory_burst_lost": 0,
        },
        raw={"echo_async": 23_000, "rss": 26.0, "hs_ramp": 2_200},
        channels={"echo_async": 6_900, "auth": 400, "fan_memory_burst_rate": 3_000},
    )

    lines = _report.target_lines(results, ["uvicorn"], [5_000, 19_000], ["memory"])

    assert [line[:10] for line in lines] == [
        "PASS  (a) ",
        "PASS  (b) ",
        "PASS  (c) ",
        "PASS  (d) ",
        "PASS  (e) ",
        "PASS  (f) ",
    ]
    assert "x Channels 3.04 (>= 3)" in lines[0]


def test_targets_miss_on_any_ratio_and_on_anything_lost() -> None:
    results = _results(
        ours={
            "echo_async": 20_000,  # 0.87x the floor but 2.9x Channels
            "fan_memory_burst_rate": 100_000,
            "fan_memory_paced_p99": 10.0,
            "fan_memory_paced_lost": 0,
            "fan_memory_burst_lost": 3,
            "joins_channels-redis": 2,
        },
        raw={"echo_async": 23_000},
        channels={"echo_async": 6_900, "fan_memory_burst_rate": 3_000},
    )

    lines = _report.target_lines(
        results, ["uvicorn"], [5_000, 10_000], ["memory", "channels-redis"]
    )

    assert lines[0].startswith("MISS  (a) uvicorn  async echo: x Channels 2.90")
    assert lines[1].startswith("MISS  (f) uvicorn  fan-out on memory")
    assert "lost 3.00 (<= 0)" in lines[1]
    assert lines[2].startswith("MISS  (g) uvicorn  joins at once on channels-redis")
    assert len(lines) == 3  # what was not measured is not judged


def test_table_marks_failed_measurements_and_leaves_out_unmeasured_rows() -> None:
    results: _report.Results = {
        ("uvicorn", "raw"): {"echo_async": 17_845.2},
        ("uvicorn", "ours"): {"echo_async": None, "echo_sync": 9_000.0},
    }
    layout = _report.rows([300, 600], 600, ["memory"], 100)

    text = _report.table(results, [("uvicorn", "raw"), ("uvicorn", "ours")], layout)

    lines = text.splitlines()
    assert lines[0].split() == ["uvicorn", "raw", "ASGI", "uvicorn", "realtime"]
    assert lines[2].split() == ["echo", "async,", "msgs/s", "17,845", "ERR"]
    assert lines[3].split() == ["echo", "sync,", "msgs/s", "-", "9,000"]
    assert len(lines) == 4
