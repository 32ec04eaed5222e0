"""The Game of Life's sockets under a message rate, and cells that keep to it.

In-process, through the life routes: a cell or a watcher that floods the
server is closed with the rate-limit close code. End to end, on a real
server: cells playing a small board at full speed, long enough to go past
the burst the server allows, are never closed for their rate. They send
no faster than the server allows: they pace themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from django_realtime.layers.base import ChannelLayer
from django_realtime.middleware.limits import CLOSE_RATE_LIMITED, TokenBucket
from django_realtime.routing import URLRouter
from django_realtime.testing import WebsocketCommunicator
from example_project.life.cell import Hello
from example_project.life.client import PacedSender
from example_project.life.pace import CELL_BURST, CELL_RATE, WATCH_BURST
from example_project.life.routing import websocket_urlpatterns
from example_project.life.rules import initial_board
from tests.e2e.example.test_chat_e2e import ServerProcess, example_env
from tests.integration.example.test_life import (
    E2E_TIMEOUT,
    Run,
    db_path,
    expected_boards,
    start_run,
    watch,
    watch_until,
)

__all__ = ["db_path", "start_run"]  # fixtures, used by name

CommunicatorFactory = Callable[..., WebsocketCommunicator]

APPLICATION = URLRouter(websocket_urlpatterns)


async def flood_until_closed(communicator: WebsocketCommunicator, count: int) -> int:
    """Send ``count`` frames at once; return the close code that ends the socket."""
    for _ in range(count):
        await communicator.send_to(text_data=json.dumps({"to": "nobody"}))
    while True:
        output = await communicator.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            code: int = output["code"]
            return code


@pytest.mark.timeout(30)
async def test_a_cell_that_floods_the_server_is_closed_with_the_rate_limit_code(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = f"t{uuid.uuid4().hex[:12]}"
    cell = websocket_communicator(APPLICATION, f"/ws/life/{board}/cell/0/0/?size=3x3")
    assert (await cell.connect())[0]

    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        # Far more than a burst, faster than any rate: the consumer answers
        # each with an error, the limit closes the socket on the way.
        code = await flood_until_closed(cell, int(CELL_BURST) * 4)

    assert code == CLOSE_RATE_LIMITED
    assert f"/ws/life/{board}/cell/0/0/ with {CLOSE_RATE_LIMITED}" in caplog.text


@pytest.mark.timeout(30)
async def test_a_watcher_that_talks_is_closed_with_the_rate_limit_code(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
) -> None:
    board = f"t{uuid.uuid4().hex[:12]}"
    watcher = websocket_communicator(APPLICATION, f"/ws/life/{board}/watch/")
    assert (await watcher.connect())[0]

    code = await flood_until_closed(watcher, int(WATCH_BURST) * 4)

    assert code == CLOSE_RATE_LIMITED


class RecordingSocket:
    """Stand in for a cell's connection: note when each frame goes out."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def send(self, text: str) -> None:
        self.sent.append(asyncio.get_running_loop().time())


@pytest.mark.timeout(30)
async def test_a_cell_sends_no_faster_than_the_server_s_limit_allows() -> None:
    socket = RecordingSocket()
    sender = PacedSender(socket)  # type: ignore[arg-type]
    count = int(CELL_BURST) + 20

    await sender.send([Hello(generation) for generation in range(count)])

    # The server's own bucket, fed the same times, never runs dry.
    assert len(socket.sent) == count
    server = TokenBucket(CELL_RATE, CELL_BURST, socket.sent[0])
    assert all(server.take(at) for at in socket.sent)


@pytest.mark.e2e
@pytest.mark.timeout(E2E_TIMEOUT)
def test_cells_at_full_speed_keep_under_the_rate_and_are_never_closed(
    tmp_path: Path, start_run: Callable[..., Run]
) -> None:
    # A 3x3 board at full speed steps as fast as the relay goes: well over
    # the server's rate for long enough, unless the cells pace themselves.
    generations = 200
    board = f"e2e-{uuid.uuid4().hex[:12]}"
    server = ServerProcess(
        "uvicorn",
        example_env(tmp_path / "db.sqlite3", DJANGO_DEBUG="0"),
        tmp_path / "server.log",
    )
    try:
        server.wait_until_listening()
        with watch(server.address, board) as watcher:
            run = start_run(
                f"--url=http://{server.address}",
                f"--board={board}",
                "--size=3x3",
                "--pattern=blinker",
                f"--generations={generations}",
                "--cells-per-process=9",
                "--delay=0",
            )
            boards = watch_until(watcher, 3, 3, generations)
        assert run.wait() == 0, run.output
    finally:
        server.kill()

    assert (
        boards[generations]
        == expected_boards(initial_board("blinker", 3, 3), generations)[generations]
    )
    assert "lost its connection" not in run.output
    assert str(CLOSE_RATE_LIMITED) not in server.output
