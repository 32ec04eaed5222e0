"""ConnectionLimits counts an HTTP stream client as one connection; POSTs are rated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.streams_http.client import RoundRobinClient
from tests.e2e.streams_http.conftest import base
from tests.servers import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

LIMITED = "tests.e2e.streams_http.app:limited_application"


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess("uvicorn", LIMITED, server_env, tmp_path / "log")
    try:
        yield process
    finally:
        process.kill()


def test_a_held_event_stream_is_a_connection_under_the_per_address_limit(
    server: ServerProcess,
) -> None:
    client = RoundRobinClient([base(server)])
    client.poll(timeout=0)
    client.subscribe("open.limits")
    events = client.events(base(server))
    assert next(events)[0] == "client"  # held open from now on
    response = requests.get(
        base(server) + "/realtime/open/poll", params={"timeout": "0"}, timeout=10
    )
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_connections"
    # POSTs are not connections: the client's requests go on.
    (pong,) = client.post({"kind": "ping"})
    assert pong["kind"] == "pong"
    events.close()
    # Once the server sees the stream gone, a poll is let in again; the
    # refusal's count is the proof that the stream was counted until then.
    deadline = time.monotonic() + 10
    while True:
        response = requests.get(
            base(server) + "/realtime/open/poll", params={"timeout": "0"}, timeout=10
        )
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # another process's state cannot be awaited
    assert response.status_code == 200


def test_posts_over_the_rate_are_refused_with_429(server: ServerProcess) -> None:
    client = RoundRobinClient([base(server)], prefix="/realtime/limited/")
    client.poll(timeout=0)
    statuses = [
        client.post_raw(b'{"kind": "ping", "id": %d}' % n).status_code for n in range(4)
    ]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]
    refused = client.post_raw(b'{"kind": "ping", "id": 9}')
    if refused.status_code == 429:
        assert refused.json()["error"] == "rate_limited"
