"""Clients of the HTTP transports are members, across two real server processes.

A uvicorn and a daphne process share presence and history in Redis. A
long-polling client and an SSE client send their requests to each process
in turn (no affinity at all), staying on one for longer than the grace
period now and then. A WebSocket watcher sees each of them join
once, as one connection, stay through every poll and reconnection with no
leave, and leave once, after the grace period (1 s here), when it stops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.e2e.presence.client import Watcher
from tests.e2e.streams_http.client import RoundRobinClient
from tests.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(120)]

APPLICATION = "tests.e2e.presence.http_app:application"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    prefix = f"phe2e-{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.presence.http_settings",
        "PRESENCE_E2E_PREFIX": prefix,
    }
    started: list[ServerProcess] = []
    try:
        for kind in ("uvicorn", "daphne"):
            started.append(
                ServerProcess(kind, APPLICATION, env, tmp_path / f"{kind}.log")
            )
        yield started
    finally:
        for server in started:
            server.kill()
        redis = Redis()
        keys = list(redis.scan_iter(f"{prefix}:*"))
        if keys:
            redis.delete(*keys)
        redis.close()


class Counting(Watcher):
    """A watcher that also lists every join it applies: (key, connections)."""

    def __init__(self, url: str, user: str, stream: str) -> None:
        super().__init__(url, user, stream)
        self.joins: list[tuple[str, int]] = []

    def _apply(self, data: dict[str, Any]) -> None:
        for key, record in data["joins"].items():
            if record["v"] > max(self.version, self.versions.get(key, 0)):
                self.joins.append((key, record["connections"]))
        super()._apply(data)


def _start(bases: list[str], user: str) -> RoundRobinClient:
    client = RoundRobinClient(bases, prefix=f"/realtime/{user}/")
    client.poll(timeout=0)  # a client id and the CSRF token
    (subscribed,) = client.subscribe("presence:room.h")
    assert subscribed["kind"] == "subscribed", subscribed
    return client


#: Which process serves each request: one, then the other for longer than
#: the grace period (the first one's grace ends meanwhile), then both in turn.
SCHEDULE = [0, 1, 1, 1, 1, 0, 1, 0]


def _poll_a_while(client: RoundRobinClient) -> None:
    """Long-poll on the processes of :data:`SCHEDULE`, one poll after the other."""
    for turn in SCHEDULE:
        client.turn = turn
        client.poll(timeout=0.5)


def _listen_a_while(client: RoundRobinClient) -> None:
    """Open event streams on the processes of :data:`SCHEDULE`, one at a time."""
    for turn in SCHEDULE:
        events = client.events(client.bases[turn])
        heartbeats = 0
        for event, _data in events:
            heartbeats += event == "client"
            if heartbeats == 2:  # one heartbeat (0.5 s) after it opened
                break
        events.close()


async def test_an_sse_and_a_polling_client_on_both_processes_join_once_and_leave_once(
    servers: list[ServerProcess],
) -> None:
    bases = [f"http://127.0.0.1:{server.port}" for server in servers]
    watcher = Counting(f"ws://127.0.0.1:{servers[0].port}", "watcher", "room.h")
    await watcher.open()
    poller = _start(bases, "poller")
    sse = _start(list(reversed(bases)), "sse")
    everyone = {"watcher", "poller", "sse"}
    polling = asyncio.create_task(asyncio.to_thread(_poll_a_while, poller))
    listening = asyncio.create_task(asyncio.to_thread(_listen_a_while, sse))
    await watcher.until(everyone, 30)
    await polling
    await listening
    # Still members, each with one connection; then the grace period ends.
    await watcher.until({"watcher"}, 30)
    for user in ("poller", "sse"):
        assert [join for join in watcher.joins if join[0] == user] == [(user, 1)]
        assert watcher.leaves.count(user) == 1
    assert watcher.ws is not None
    await watcher.close()
