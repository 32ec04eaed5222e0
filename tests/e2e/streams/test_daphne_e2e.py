"""Hostile frames on a real daphne: the answers stay small, the socket open.

daphne ends a consumer whose message is over its 1 MiB frame limit with
1011; an error frame that quoted a big frame whole was such a message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from django_realtime.testing import LiveServer

APPLICATION = "tests.integration.streams.daphne_app:application"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(APPLICATION, databases=()) as live_server:
        yield live_server


async def _answer(websocket: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    return frame


@pytest.mark.parametrize(
    "content",
    [
        {"kind": "subscribe", "id": 1, "stream": "\x01" * 150_000},
        {"kind": "request", "id": 1, "type": "\n" * 500_000},
        {"kind": "x" * 700_000, "id": 1},
    ],
    ids=["stream", "type", "kind"],
)
async def test_an_error_frame_for_a_big_bad_frame_is_small_and_the_socket_stays_open(
    server: LiveServer, content: dict[str, Any]
) -> None:
    async with connect(
        server.ws_url + "/ws/streams/", open_timeout=10, max_size=None
    ) as websocket:
        await websocket.send(json.dumps(content))
        error = await _answer(websocket)
        assert (error["id"], error["code"]) == (1, "bad_frame")
        assert len(json.dumps(error)) < 1000
        await websocket.send(json.dumps({"kind": "ping", "id": 2}))
        assert await _answer(websocket) == {"kind": "pong", "id": 2}
