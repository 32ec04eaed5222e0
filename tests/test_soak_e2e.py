"""Connections come and go on a real uvicorn: nothing stays behind.

A short run of ``benchmarks.soak`` on each channel layer: 300 room
members in 30 rooms, 150 closed (one in ten dropped without a closing
handshake) and 150 opened every 5 s for 8 s, probes through the rooms
twice a second; then everyone closes. The warm-up opens as many
connections as the run, so that the baseline is taken with the allocator
already at the run's high-water mark: what the RSS check then sees is
growth beyond it, which is what a leak makes (the full run,
``python -m benchmarks.soak``, warms up with 1,000 of 10,000 and shows the
allocator's retention separately; see docs/performance.rst).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks import soak

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

OPTIONS = soak.Options(
    connections=300,
    churn=150,
    period=5.0,
    duration=8.0,
    rooms=30,
    warmup=300,
    probe_interval=0.5,
    probe_timeout=5.0,
    settle=2.0,
    settle_timeout=20.0,
    pin=False,
)

LAYERS = [
    pytest.param("memory"),
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.fixture(scope="module")
def results() -> dict[str, soak.SoakResult]:
    """Hold each layer's run for the module's tests."""
    return {}


@pytest.fixture
def result(
    results: dict[str, soak.SoakResult],
    layer: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> soak.SoakResult:
    """Soak ``layer`` once for the module; later tests reuse the result."""
    if layer not in results:
        logs: Path = tmp_path_factory.mktemp(f"soak-{layer}")
        results[layer] = asyncio.run(soak.run_layer(layer, OPTIONS, logs))
    return results[layer]


def _checks(result: soak.SoakResult) -> dict[str, bool]:
    return {check.name: check.ok for check in result.checks[0]}


@pytest.fixture(params=LAYERS)
def layer(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_every_handshake_close_and_probe_succeeds(result: soak.SoakResult) -> None:
    report = soak.report(result, OPTIONS)
    fleet = result.fleet
    # The churn really happened: far more connections than the count.
    assert fleet.opened >= OPTIONS.warmup + OPTIONS.connections + 200, report
    assert fleet.aborted > 0, report
    assert fleet.failures == 0, report
    assert fleet.probes >= 10, report
    assert fleet.delivered == fleet.expected > 0, report
    assert result.log.errors == 0, report


def test_memory_fds_and_redis_come_back_to_the_baseline(
    result: soak.SoakResult,
) -> None:
    report = soak.report(result, OPTIONS)
    checks = _checks(result)
    for name in ("RSS", "server fds", "client fds"):
        assert checks[name], report
    if result.layer == "redis":
        assert checks["Redis clients"], report
        assert checks["Redis keys"], report
        assert result.baseline.redis_clients == 2, report  # commands, pub/sub


def test_no_consumer_outlives_its_connection(result: soak.SoakResult) -> None:
    # With the Redis layer, drain's control task once kept the first
    # accepted consumer alive through its context (fixed in 58b7fca).
    assert result.afters[0].app["consumers"] == 0, soak.report(result, OPTIONS)
