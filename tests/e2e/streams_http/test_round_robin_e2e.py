"""Long-polling and SSE clients whose requests land on either of two processes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.streams_http.client import RoundRobinClient
from tests.e2e.streams_http.conftest import base
from tests.servers import ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def _publish(client: RoundRobinClient, stream: str, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        (reply,) = client.request("publish", {"stream": stream, "data": {"n": n}})
        assert reply["kind"] == "reply", reply


def _numbers(frames: list[dict[str, Any]], stream: str) -> list[int]:
    return [
        frame["data"]["n"]
        for frame in frames
        if frame["kind"] == "publication" and frame["stream"] == stream
    ]


def test_a_polling_client_on_two_processes_in_turn_gets_every_message_once_in_order(
    servers: list[ServerProcess],
) -> None:
    reader = RoundRobinClient([base(server) for server in servers])
    assert reader.poll(timeout=0) == []  # a client id and the CSRF token
    (subscribed,) = reader.subscribe("open.room")
    assert subscribed["kind"] == "subscribed"
    writer = RoundRobinClient([base(server) for server in reversed(servers)])
    writer.poll(timeout=0)
    _publish(writer, "open.room", 30)
    received: list[int] = []
    while len(received) < 30:
        frames = reader.poll()
        assert frames, "a poll returned nothing while 30 messages wait"
        received += _numbers(frames, "open.room")
    assert received == list(range(30))
    assert reader.positions["open.room"][1] == 30


def test_an_sse_client_gets_what_another_process_publishes_and_resumes_on_the_other(
    servers: list[ServerProcess],
) -> None:
    first, second = (base(server) for server in servers)
    reader = RoundRobinClient([first, second])
    reader.poll(timeout=0)
    reader.subscribe("open.feed")
    writer = RoundRobinClient([second, first])
    writer.poll(timeout=0)
    received: list[int] = []
    events = reader.events(first)
    event, data = next(events)
    assert event == "client"
    assert data["client"]
    _publish(writer, "open.feed", 10)
    for event, data in events:
        if event == "message":
            received += _numbers([data], "open.feed")
        if len(received) == 10:
            break
    events.close()
    # The process that served the events goes; meanwhile more is published.
    servers[0].kill()
    writer.bases = [second]
    _publish(writer, "open.feed", 10, start=10)
    for event, data in reader.events(second):
        if event == "message":
            received += _numbers([data], "open.feed")
        if len(received) == 20:
            break
    assert received == list(range(20))


def test_a_failed_request_publishes_nothing_and_a_refused_stream_is_told(
    servers: list[ServerProcess],
) -> None:
    client = RoundRobinClient([base(server) for server in servers])
    client.poll(timeout=0)
    client.subscribe("open.a")
    (error,) = client.request(
        "publish_then_fail", {"stream": "open.a", "data": {"n": -1}}
    )
    assert (error["kind"], error["code"]) == ("error", "request_failed")
    (refused,) = client.subscribe("secret.b")
    assert (refused["kind"], refused["code"]) == ("error", "forbidden")
    _publish(client, "open.a", 1)
    frames = client.poll()
    assert _numbers(frames, "open.a") == [0]
