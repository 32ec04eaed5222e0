"""ConnectionLimits(http_paths=...): an HTTP transport's waiting GET is a connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator

from django_realtime.middleware.limits import ConnectionLimits, stats

pytestmark = pytest.mark.timeout(10)


class Held:
    """An HTTP application that answers once released (a long-poll, say)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.reached.set()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [],
        "client": ("10.0.0.1", 5000),
    }


async def _status(app: Any, method: str, path: str) -> tuple[int, Any]:
    communicator = ApplicationCommunicator(app, _scope(method, path))
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(5)
    body = await communicator.receive_output(5)
    await communicator.wait(5)
    return start["status"], body["body"]


async def test_a_waiting_get_under_http_paths_counts_against_the_address_limit() -> (
    None
):
    inner = Held()
    app = ConnectionLimits(inner, max_connections_per_address=1, http_paths=["/rt/"])
    open_before = stats.open
    waiting = ApplicationCommunicator(app, _scope("GET", "/rt/poll"))
    await waiting.send_input({"type": "http.request", "body": b""})
    await asyncio.wait_for(inner.reached.wait(), 5)  # counted on its way in
    assert stats.open == open_before + 1

    status, body = await _status(app, "GET", "/rt/events")
    assert status == 429
    assert json.loads(body)["error"] == "too_many_connections"

    inner.release.set()  # the other requests pass, and are not counted
    assert (await _status(app, "POST", "/rt/"))[0] == 200
    assert (await _status(app, "GET", "/elsewhere/"))[0] == 200
    assert (await waiting.receive_output(5))["status"] == 200
    await waiting.receive_output(5)
    await waiting.wait(5)
    assert stats.open == open_before
    assert (await _status(app, "GET", "/rt/poll"))[0] == 200


async def test_a_full_process_refuses_a_get_with_503() -> None:
    inner = Held()
    inner.release.set()
    app = ConnectionLimits(inner, max_connections=1, http_paths=["/rt/"])
    stats.open += 1  # another connection holds the only place
    try:
        status, body = await _status(app, "GET", "/rt/poll")
    finally:
        stats.open -= 1
    assert status == 503
    assert json.loads(body)["error"] == "over_capacity"


def test_http_paths_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="list of path prefixes"):
        ConnectionLimits(Held(), http_paths="/rt/")  # type: ignore[arg-type]
