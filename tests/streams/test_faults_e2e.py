"""A short run of the streams fault-injection benchmark, on real servers and Redis.

``benchmarks.stream_faults`` with 20 clients for a few seconds over one
uvicorn and one daphne process sharing Redis: every client drops its
connection a few times (resets and clean closes), the servers' Redis
connections are cut once, and some clients stay away past the history
window. Nothing may be lost without a signal, nor arrive twice.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from benchmarks import stream_faults

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture(autouse=True)
def _redis() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        reason = f"Redis is not reachable at 127.0.0.1:6379 ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires it)")
        pytest.skip(reason)


async def test_clients_dropping_on_two_servers_lose_nothing_silently_nor_twice(
    tmp_path: Path,
) -> None:
    options = stream_faults.Options(
        clients=20,
        duration=8.0,
        rate=40.0,
        history=100,  # 2.5 s of history
        drop_every=2.0,
        long_away=0.1,
        kill_redis_every=5.0,
        drain_timeout=15.0,
        logs=tmp_path,
        seed=5,
    )

    outcome = await stream_faults.run(options)

    figures = outcome.total
    assert outcome.failures == [], stream_faults.report(outcome, options)
    assert figures["missing"] == 0
    assert figures["duplicates"] == 0
    assert figures["undrained"] == 0
    assert figures["delivered"]
    assert figures["delivered"] + figures["signalled"] == figures["expected"]
    # The faults happened, and most resumes were recovered.
    assert figures["redis_kills"] == 1
    assert figures["redis_killed"]
    assert (figures["reconnects"] or 0) >= 2 * options.clients
    assert (figures["resumed"] or 0) >= (figures["not_resumed"] or 0)
    assert figures["server_resyncs"]
    for server in ("uvicorn", "daphne"):
        assert outcome.figures[server]["resumed"], server


async def test_a_flushed_store_and_a_restarted_server_are_signalled_not_silent(
    tmp_path: Path,
) -> None:
    options = stream_faults.Options(
        clients=10,
        duration=6.0,
        rate=40.0,
        history=100,
        drop_every=2.0,
        long_away=0.0,
        kill_redis_every=None,
        flush_every=2.5,
        restart_every=3.5,
        drain_timeout=15.0,
        logs=tmp_path,
        seed=7,
    )

    outcome = await stream_faults.run(options)

    figures = outcome.total
    assert outcome.failures == [], stream_faults.report(outcome, options)
    assert figures["missing"] == 0
    assert figures["duplicates"] == 0
    assert figures["flushes"] == 2
    assert figures["restarts"] == 1
    # Every client was subscribed through both flushes: each was told.
    assert (figures["lost_epoch_changed"] or 0) >= 2 * options.clients
    assert figures["unjustified"] == 0
