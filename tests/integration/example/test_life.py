"""The distributed Game of Life: rules, cells, relay, and the whole demo.

Three layers, as the code has them:

* the pure core (board shape, rules, a cell's bookkeeping), tested without
  an event loop, including whole boards of cells whose messages are
  delivered in random order, lost, or sent before their receiver joined;
* the server's consumers, driven in-process by communicators: the relay
  reaches exactly the eight neighbours, across the edges;
* ``manage.py gameoflife`` against a real server process on a loopback
  port, checked through a watcher socket against boards computed by the
  rules module, and stopped by its end, by Ctrl-C, or by being killed.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from django_realtime.layers.base import ChannelLayer
from django_realtime.routing import URLRouter
from django_realtime.testing import WebsocketCommunicator
from example_project.life.cell import (
    Cell,
    Hello,
    ProtocolError,
    State,
    decode,
    encode,
)
from example_project.life.client import RunConfig, cell_url, origin_of
from example_project.life.management.commands import gameoflife
from example_project.life.routing import websocket_urlpatterns
from example_project.life.rules import Board, initial_board, next_state
from example_project.life.topology import (
    Coordinates,
    cell_group,
    neighbours,
    parse_size,
    watch_group,
)
from tests.e2e.example import test_chat_e2e
from tests.e2e.example.test_chat_e2e import (
    IO_TIMEOUT,
    ROOT,
    ServerProcess,
    example_env,
    http_get,
)

# The board of the classic glider, as the rules module starts it.
GLIDER_6X6 = """
.#....
..#...
###...
......
......
......
"""

# ---------------------------------------------------------------------------
# The board's shape


def test_neighbours_wrap_around_the_edges_of_the_board() -> None:
    assert set(neighbours(0, 0, 5, 4)) == {
        (4, 3),
        (0, 3),
        (1, 3),
        (4, 0),
        (1, 0),
        (4, 1),
        (0, 1),
        (1, 1),
    }
    assert set(neighbours(4, 3, 5, 4)) == {
        (3, 2),
        (4, 2),
        (0, 2),
        (3, 3),
        (0, 3),
        (3, 0),
        (4, 0),
        (0, 0),
    }


def test_every_cell_has_eight_distinct_neighbours_on_the_smallest_board() -> None:
    for y in range(3):
        for x in range(3):
            around = neighbours(x, y, 3, 3)
            assert len(set(around)) == 8
            assert (x, y) not in around


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [(5, 0, "got (5, 0)"), (0, -1, "got (0, -1)")],
)
def test_neighbours_of_a_cell_off_the_board_are_refused(
    x: int, y: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        neighbours(x, y, 5, 4)


@pytest.mark.parametrize(
    ("text", "size"), [("8x8", (8, 8)), ("3x200", (3, 200)), (" 12x5 ", (12, 5))]
)
def test_sizes_are_read_as_width_by_height(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8", "Expected a size such as '8x8'"),
        ("8*8", "Expected a size such as '8x8'"),
        ("-3x4", "Expected a size such as '8x8'"),
        ("2x8", "Expected a width from 3 to 200 cells, got 2."),
        ("8x201", "Expected a height from 3 to 200 cells, got 201."),
    ],
)
def test_sizes_that_make_no_torus_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_size(text)


def test_group_names_are_valid_channel_layer_group_names() -> None:
    name = "b" * 50
    for group in (cell_group(name, 199, 199), watch_group(name)):
        assert re.fullmatch(r"[a-zA-Z\d\-_.]{1,99}", group), group


# ---------------------------------------------------------------------------
# The rules


@pytest.mark.parametrize("alive", [False, True])
@pytest.mark.parametrize("live_neighbours", range(9))
def test_next_state_follows_b3_s23(alive: bool, live_neighbours: int) -> None:
    expected = live_neighbours == 3 or (alive and live_neighbours == 2)

    assert next_state(alive, live_neighbours) is expected


def test_next_state_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="Expected 0 to 8 live neighbours, got 9"):
        next_state(True, 9)


def test_a_blinker_turns_every_generation_and_comes_back() -> None:
    start = initial_board("blinker", 5, 5)

    assert start.rows() == [".....", ".....", ".###.", ".....", "....."]
    assert start.step().rows() == [".....", "..#..", "..#..", "..#..", "....."]
    assert start.after(2) == start


def test_a_glider_moves_one_cell_diagonally_every_four_generations() -> None:
    start = initial_board("glider", 6, 6)
    assert start == Board.from_rows(GLIDER_6X6.split())

    later = start.after(4)

    assert later.alive == {((x + 1) % 6, (y + 1) % 6) for x, y in start.alive}
    # Across the edges, back where it started after six moves.
    assert start.after(24) == start
    assert start.after(23) != start


def test_a_block_is_still_and_a_lonely_cell_dies() -> None:
    block = Board.from_rows(["....", ".##.", ".##.", "...."])
    lonely = Board.from_rows(["...", ".#.", "..."])

    assert block.step() == block
    assert lonely.step().alive == frozenset()


def test_random_boards_are_reproducible_by_seed() -> None:
    one = initial_board("random", 10, 10, seed=7)

    assert one == initial_board("random", 10, 10, seed=7)
    assert one != initial_board("random", 10, 10, seed=8)
    assert 0 < len(one.alive) < 100


def test_unknown_patterns_and_cells_off_the_board_are_refused() -> None:
    with pytest.raises(ValueError, match="Expected a pattern among glider"):
        initial_board("spaceship", 8, 8)
    with pytest.raises(ValueError, match=re.escape("got [(3, 0)]")):
        Board(3, 3, frozenset({(3, 0)}))


# ---------------------------------------------------------------------------
# One cell's bookkeeping


def make_cell(alive: bool = False, until: int | None = None) -> Cell:
    """Return cell (0, 0) of a 5x4 board."""
    return Cell(0, 0, 5, 4, alive, until=until, patience=2.0)


def test_a_cell_greets_with_a_hello_and_its_state() -> None:
    cell = make_cell(alive=True)

    assert cell.greet(now=0) == [Hello(0), State(0, True)]


def test_a_cell_steps_once_it_has_all_eight_neighbours_states() -> None:
    cell = make_cell(alive=False)
    around = sorted(cell.neighbours)
    live = set(around[:3])

    for neighbour in around[:-1]:
        assert cell.receive(neighbour, State(0, neighbour in live), now=0) == []
    assert cell.missing() == {around[-1]}
    sent = cell.receive(around[-1], State(0, False), now=0)

    # Three live neighbours: born.
    assert sent == [State(1, True)]
    assert (cell.generation, cell.alive) == (1, True)
    assert cell.missing() == set(around)


def test_a_cell_buffers_neighbours_one_generation_ahead() -> None:
    cell = make_cell(alive=True)
    around = sorted(cell.neighbours)
    # Every neighbour but the last is at generation 1 already.
    for neighbour in around[:-1]:
        assert cell.receive(neighbour, State(0, neighbour in around[:2]), now=0) == []
        assert cell.receive(neighbour, State(1, False), now=0) == []

    # The last one's state at 0 completes generation 0: the cell steps to 1.
    assert cell.receive(around[-1], State(0, False), now=0) == [State(1, True)]
    # Its state at 1 completes generation 1: two live neighbours at 0 kept the
    # cell alive, none at 1 kills it.
    assert cell.receive(around[-1], State(1, False), now=0) == [State(2, False)]
    assert cell.generation == 2


def test_a_state_two_generations_ahead_is_refused_and_changes_nothing() -> None:
    cell = make_cell()
    neighbour = min(cell.neighbours)

    with pytest.raises(ProtocolError, match="another run playing on this board"):
        cell.receive(neighbour, State(2, True), now=0)

    assert cell.missing() == set(cell.neighbours)


def test_repeated_states_are_ignored_and_contradictions_refused() -> None:
    cell = make_cell()
    neighbour = min(cell.neighbours)
    cell.receive(neighbour, State(0, True), now=0)

    assert cell.receive(neighbour, State(0, True), now=0) == []
    with pytest.raises(ProtocolError, match="to be alive at generation 0"):
        cell.receive(neighbour, State(0, False), now=0)


def test_states_of_generations_already_used_are_ignored() -> None:
    cell = make_cell()
    for neighbour in cell.neighbours:
        cell.receive(neighbour, State(0, False), now=0)
    assert cell.generation == 1

    assert cell.receive(min(cell.neighbours), State(0, True), now=0) == []


def test_messages_from_cells_that_are_not_neighbours_are_refused() -> None:
    cell = make_cell()

    with pytest.raises(ProtocolError, match=r"from \(2, 2\)"):
        cell.receive((2, 2), State(0, True), now=0)


def test_a_hello_is_answered_with_the_states_it_asks_for_to_its_sender() -> None:
    cell = make_cell(alive=True)
    for neighbour in cell.neighbours:
        cell.receive(neighbour, State(0, False), now=0)
    asker = min(cell.neighbours)

    assert cell.receive(asker, Hello(0), now=0) == [
        State(0, True, to=asker),
        State(1, False, to=asker),
    ]
    assert cell.receive(asker, Hello(1), now=0) == [State(1, False, to=asker)]
    assert cell.receive(asker, Hello(2), now=0) == []
    # Only the latest two states are kept, and greeting again sends them.
    assert cell.greet(now=0) == [Hello(1), State(0, True), State(1, False)]


def test_a_cell_that_waited_too_long_asks_the_neighbours_it_misses() -> None:
    cell = make_cell()
    cell.greet(now=100.0)
    around = sorted(cell.neighbours)
    for neighbour in around[2:]:
        cell.receive(neighbour, State(0, False), now=100.5)

    assert cell.poll(now=101.9) == []
    assert cell.poll(now=102.0) == [Hello(0, to=around[0]), Hello(0, to=around[1])]
    # Patience starts again after asking.
    assert cell.poll(now=103.0) == []
    cell.receive(around[0], State(0, False), now=103.5)
    assert cell.poll(now=104.0) == [Hello(0, to=around[1])]


def finished(cell: Cell) -> bool:
    return cell.finished


def test_a_cell_stops_at_its_last_generation_and_finishes_once_neighbours_do() -> None:
    cell = make_cell(until=1)
    cell.greet(now=0)
    for neighbour in cell.neighbours:
        cell.receive(neighbour, State(0, False), now=0)
    assert cell.generation == 1
    # Through a function: mypy would take the property for a constant.
    assert not finished(cell)
    around = sorted(cell.neighbours)

    for neighbour in around[:-1]:
        assert cell.receive(neighbour, State(1, False), now=0) == []
    assert cell.missing() == {around[-1]}
    assert cell.receive(around[-1], State(1, False), now=0) == []

    assert cell.finished
    assert cell.generation == 1
    assert cell.poll(now=1000) == []


def test_messages_round_trip_through_their_json_form() -> None:
    for message in (State(3, True), Hello(2)):
        content = encode(message)
        content.update(x=1, y=2)

        assert decode(json.loads(json.dumps(content))) == ((1, 2), message)
    assert encode(State(1, False, to=(4, 0)))["to"] == [4, 0]
    assert encode(Hello(0))["to"] == "neighbours"
    assert encode(Hello(0, to=(1, 3)))["to"] == [1, 3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "Expected a JSON object"),
        ({"type": "state", "generation": 0, "alive": True}, "'x' to be an integer"),
        ({"type": "state", "x": 0, "y": True, "generation": 0}, "'y' to be an"),
        ({"type": "state", "x": 0, "y": 0, "generation": -1}, "'generation' to be"),
        ({"type": "state", "x": 0, "y": 0, "generation": 0}, "'alive' to be true"),
        ({"type": "bye", "x": 0, "y": 0, "generation": 0}, "got 'bye'"),
    ],
)
def test_malformed_relayed_messages_are_refused(content: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        decode(content)


# ---------------------------------------------------------------------------
# Whole boards of cells, with a relay that acts as the server does


class Relay:
    """Deliver what cells send as the server would, in a chosen random order.

    Messages to a cell that is not connected are lost, as group messages to
    an empty group are; ``loss`` loses that share of all the others.
    """

    def __init__(self, start: Board, until: int, seed: int, loss: float = 0.0):
        self.width, self.height = start.width, start.height
        self.cells = {
            (x, y): Cell(
                x, y, self.width, self.height, (x, y) in start.alive, until=until
            )
            for y in range(self.height)
            for x in range(self.width)
        }
        self.random = random.Random(seed)
        self.loss = loss
        self.connected: set[Coordinates] = set()
        self.inbox: list[tuple[Coordinates, dict[str, Any]]] = []
        # What the watchers saw: generation -> cell -> alive.
        self.watched: dict[int, dict[Coordinates, bool]] = {}
        self.now = 0.0

    def post(self, sender: Coordinates, messages: list[Any]) -> None:
        for message in messages:
            content = {**encode(message), "x": sender[0], "y": sender[1]}
            to = content.get("to")
            if isinstance(to, list):
                targets: list[Coordinates] = [(to[0], to[1])]
            else:
                targets = list(neighbours(*sender, self.width, self.height))
            if to is None:
                cells = self.watched.setdefault(content["generation"], {})
                cells[sender] = content["alive"]
            for target in targets:
                if target in self.connected and self.random.random() >= self.loss:
                    self.inbox.append((target, content))

    def join(self, cells: list[Coordinates]) -> None:
        for position in cells:
            self.connected.add(position)
            self.post(position, self.cells[position].greet(self.now))

    def deliver_all(self) -> None:
        while self.inbox:
            target, content = self.inbox.pop(self.random.randrange(len(self.inbox)))
            sender, message = decode(content)
            self.post(target, self.cells[target].receive(sender, message, self.now))

    def wait_patiently(self) -> None:
        """Let time pass until cells ask again, and deliver what follows."""
        self.now += 10.0
        for position, cell in self.cells.items():
            self.post(position, cell.poll(self.now))
        self.deliver_all()

    def boards(self) -> dict[int, Board]:
        """Return each generation every cell broadcast."""
        return {
            generation: Board(
                self.width,
                self.height,
                frozenset(cell for cell, alive in cells.items() if alive),
            )
            for generation, cells in self.watched.items()
            if len(cells) == self.width * self.height
        }


def expected_boards(start: Board, until: int) -> dict[int, Board]:
    boards = {0: start}
    for generation in range(1, until + 1):
        boards[generation] = boards[generation - 1].step()
    return boards


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "start",
    [
        initial_board("glider", 6, 6),
        initial_board("blinker", 5, 3),
        initial_board("random", 7, 5, seed=3),
    ],
    ids=["glider", "blinker", "random"],
)
def test_cells_play_the_rules_whatever_the_order_of_delivery(
    start: Board, seed: int
) -> None:
    relay = Relay(start, until=12, seed=seed)

    relay.join(list(relay.cells))
    relay.deliver_all()

    assert all(cell.finished for cell in relay.cells.values())
    assert relay.boards() == expected_boards(start, 12)


@pytest.mark.parametrize("seed", range(5))
def test_cells_that_join_late_get_the_states_they_missed(seed: int) -> None:
    start = initial_board("random", 6, 5, seed=seed)
    relay = Relay(start, until=8, seed=seed)
    everyone = list(relay.cells)
    relay.random.shuffle(everyone)

    # The first half plays what it can; nobody steps past generation 0
    # without the others.
    relay.join(everyone[:15])
    relay.deliver_all()
    assert {cell.generation for cell in relay.cells.values()} == {0}
    relay.join(everyone[15:])
    relay.deliver_all()

    assert all(cell.finished for cell in relay.cells.values())
    assert relay.boards() == expected_boards(start, 8)


@pytest.mark.parametrize("seed", range(5))
def test_cells_recover_lost_messages_by_asking_again(seed: int) -> None:
    start = initial_board("glider", 6, 6)
    relay = Relay(start, until=10, seed=seed, loss=0.05)
    relay.join(list(relay.cells))
    relay.deliver_all()

    rounds = 0
    while not all(cell.finished for cell in relay.cells.values()):
        rounds += 1
        assert rounds < 100, relay.cells
        relay.wait_patiently()

    assert rounds > 0  # something was lost, and found again
    final = {cell.position for cell in relay.cells.values() if cell.alive}
    assert final == start.after(10).alive


# ---------------------------------------------------------------------------
# The server's consumers, in-process

CommunicatorFactory = Callable[..., WebsocketCommunicator]

# The routes alone: the origin check and the auth stack of the project's
# asgi.py are tested end to end below.
APPLICATION = URLRouter(websocket_urlpatterns)


@pytest.fixture
def board_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def connect_cell(
    factory: CommunicatorFactory, board: str, x: int, y: int, size: str = "5x4"
) -> WebsocketCommunicator:
    communicator = factory(APPLICATION, f"/ws/life/{board}/cell/{x}/{y}/?size={size}")
    connected, _ = await communicator.connect()
    assert connected, f"cell ({x}, {y}) of {board} {size} was refused"
    return communicator


async def connect_watcher(
    factory: CommunicatorFactory, board: str
) -> WebsocketCommunicator:
    communicator = factory(APPLICATION, f"/ws/life/{board}/watch/")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.mark.timeout(30)
async def test_a_cell_is_relayed_to_exactly_its_eight_neighbours_and_watchers(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
    board_name: str,
) -> None:
    cells = {
        (x, y): await connect_cell(websocket_communicator, board_name, x, y)
        for y in range(4)
        for x in range(5)
    }
    watcher = await connect_watcher(websocket_communicator, board_name)
    elsewhere = await connect_watcher(websocket_communicator, f"{board_name}-other")

    # The sender cannot pass itself off as another cell.
    await cells[0, 0].send_json_to(
        {"type": "state", "generation": 0, "alive": True, "x": 3, "y": 3}
    )

    relayed = {
        "type": "state",
        "generation": 0,
        "alive": True,
        "x": 0,
        "y": 0,
        "width": 5,
        "height": 4,
    }
    corner = {(4, 3), (0, 3), (1, 3), (4, 0), (1, 0), (4, 1), (0, 1), (1, 1)}
    for position in corner:
        assert await cells[position].receive_json_from() == relayed, position
    assert await watcher.receive_json_from() == relayed
    for position, communicator in cells.items():
        assert await communicator.receive_nothing(timeout=0.01), position
    assert await elsewhere.receive_nothing()


@pytest.mark.timeout(30)
async def test_to_narrows_the_relay_to_one_neighbour_or_to_the_neighbours(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
    board_name: str,
) -> None:
    sender = await connect_cell(websocket_communicator, board_name, 4, 3)
    across = await connect_cell(websocket_communicator, board_name, 0, 0)
    beside = await connect_cell(websocket_communicator, board_name, 3, 3)
    watcher = await connect_watcher(websocket_communicator, board_name)

    await sender.send_json_to({"type": "state", "generation": 1, "to": [0, 0]})
    assert (await across.receive_json_from())["to"] == [0, 0]
    assert await beside.receive_nothing()

    await sender.send_json_to({"type": "hello", "generation": 0, "to": "neighbours"})
    assert (await across.receive_json_from())["type"] == "hello"
    assert (await beside.receive_json_from())["type"] == "hello"
    assert await watcher.receive_nothing()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("content", "error"),
    [
        ([1, 2], "Expected a JSON object, got [1, 2]."),
        ({"to": [2, 2]}, "Expected 'to' to be 'neighbours' or the [x, y] of a"),
        ({"to": [True, 0]}, "got [True, 0]"),
        ({"to": "everyone"}, "got 'everyone'"),
    ],
)
async def test_what_cannot_be_relayed_is_answered_with_an_error_and_not_relayed(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
    board_name: str,
    content: Any,
    error: str,
) -> None:
    sender = await connect_cell(websocket_communicator, board_name, 0, 0)
    neighbour = await connect_cell(websocket_communicator, board_name, 1, 0)
    watcher = await connect_watcher(websocket_communicator, board_name)

    await sender.send_json_to(content)

    answer = await sender.receive_json_from()
    assert set(answer) == {"error"}
    assert error in answer["error"]
    assert await neighbour.receive_nothing()
    assert await watcher.receive_nothing()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "path",
    [
        "/ws/life/{board}/cell/0/0/",
        "/ws/life/{board}/cell/0/0/?size=5",
        "/ws/life/{board}/cell/0/0/?size=2x4",
        "/ws/life/{board}/cell/0/0/?size=5x4&size=5x4",
        "/ws/life/{board}/cell/5/0/?size=5x4",
        "/ws/life/{board}/cell/0/4/?size=5x4",
        "/ws/life/bad.name/cell/0/0/?size=5x4",
    ],
)
async def test_cells_off_the_board_or_of_no_size_are_refused(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
    board_name: str,
    path: str,
) -> None:
    communicator = websocket_communicator(APPLICATION, path.format(board=board_name))

    connected, _ = await communicator.connect()

    assert not connected


@pytest.mark.timeout(30)
async def test_a_cell_that_left_hears_nothing_more_and_watchers_only_listen(
    websocket_communicator: CommunicatorFactory,
    channel_layer: ChannelLayer,
    board_name: str,
) -> None:
    sender = await connect_cell(websocket_communicator, board_name, 0, 0)
    gone = await connect_cell(websocket_communicator, board_name, 1, 1)
    watcher = await connect_watcher(websocket_communicator, board_name)
    await gone.disconnect()
    back = await connect_cell(websocket_communicator, board_name, 1, 1)

    await sender.send_json_to({"type": "state", "generation": 0, "alive": False})

    assert (await back.receive_json_from())["x"] == 0
    assert (await watcher.receive_json_from())["x"] == 0
    await watcher.send_json_to({"type": "state"})
    assert await watcher.receive_json_from() == {
        "error": "Watchers only listen; send nothing."
    }


# ---------------------------------------------------------------------------
# The client's URLs


def test_cells_connect_to_the_site_s_socket_urls_with_its_origin() -> None:
    config = RunConfig(url="https://example.com:8443/", board="b", width=6, height=5)

    assert (
        cell_url(config, 2, 3) == "wss://example.com:8443/ws/life/b/cell/2/3/?size=6x5"
    )
    assert origin_of(config.url) == "https://example.com:8443"
    assert origin_of("ws://127.0.0.1:8000") == "http://127.0.0.1:8000"


# ---------------------------------------------------------------------------
# End to end: a real server, manage.py gameoflife, a watcher socket

E2E_TIMEOUT = 120

# Print the channel layer the example project's settings choose.
CHANNEL_LAYER_BACKEND = (
    "from example_project import settings; "
    "print(settings.CHANNEL_LAYERS['default']['BACKEND'])"
)
RUN_TIMEOUT = 90.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Return a SQLite path; the Game of Life never touches the database."""
    return tmp_path / "db.sqlite3"


@pytest.fixture(scope="module", params=["runserver", "uvicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Start the example project under ``runserver`` or uvicorn; kill it after.

    The module's tests share it: each plays a board of its own name.
    """
    env = {} if request.param == "runserver" else {"DJANGO_DEBUG": "0"}
    directory = tmp_path_factory.mktemp("life-server")
    process = ServerProcess(
        request.param,
        example_env(directory / "db.sqlite3", **env),
        directory / "server.log",
    )
    try:
        process.wait_until_listening()
        yield process
    finally:
        process.kill()


class Run:
    """``manage.py gameoflife`` in a session of its own, output in a file."""

    def __init__(self, db_path: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "gameoflife", *args],
                cwd=ROOT,
                env=example_env(db_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, as a terminal's foreground job.
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gameoflife still runs after {timeout} s:\n{self.output}")

    def processes_left(self) -> list[str]:
        """Return the processes still in the run's group, zombies aside."""
        group = self.process.pid
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # After the command: state, ppid, pgrp.
            if int(fields[2]) == group and fields[0] != "Z":
                left.append(stat.parent.name)
        return left

    def wait_until_all_ended(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.processes_left():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Processes {self.processes_left()} of the run's group still "
                    f"run {timeout} s after it ended:\n{self.output}"
                )
            # Processes of another group cannot be awaited: poll briefly.
            time.sleep(0.1)

    def kill_group(self) -> None:
        if self.processes_left():
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)


@pytest.fixture
def start_run(db_path: Path, tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Return a function that starts ``gameoflife``; kill what is left after."""
    runs: list[Run] = []

    def start(*args: str) -> Run:
        run = Run(db_path, tmp_path / f"gameoflife-{len(runs)}.log", *args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill_group()


def watch(address: str, board: str) -> ClientConnection:
    return connect(
        f"ws://{address}/ws/life/{board}/watch/",
        origin=Origin(f"http://{address}"),
        proxy=None,
        open_timeout=IO_TIMEOUT,
        close_timeout=IO_TIMEOUT,
    )


def watch_until(
    watcher: ClientConnection, width: int, height: int, generation: int
) -> dict[int, Board]:
    """Gather states until ``generation`` is complete; return the complete boards."""
    seen: dict[int, dict[Coordinates, bool]] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(seen.get(generation, {})) < width * height:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"generation {generation} incomplete: {seen}"
        content = json.loads(watcher.recv(timeout=remaining))
        assert content["type"] == "state", content
        assert (content["width"], content["height"]) == (width, height)
        cells = seen.setdefault(content["generation"], {})
        cells[content["x"], content["y"]] = content["alive"]
    return {
        number: Board(
            width, height, frozenset(c for c, alive in cells.items() if alive)
        )
        for number, cells in seen.items()
        if len(cells) == width * height
    }


@pytest.mark.e2e
@pytest.mark.timeout(E2E_TIMEOUT)
def test_gameoflife_plays_a_glider_through_a_server_that_only_relays(
    server: ServerProcess, start_run: Callable[..., Run]
) -> None:
    board = f"e2e-{uuid.uuid4().hex[:12]}"
    generations = 12
    start = initial_board("glider", 6, 6)

    with watch(server.address, board) as watcher:
        run = start_run(
            f"--url=http://{server.address}",
            f"--board={board}",
            "--size=6x6",
            "--pattern=glider",
            f"--generations={generations}",
            "--delay=0",
        )
        boards = watch_until(watcher, 6, 6, generations)

    # Every generation the page could draw is the rules' board.
    assert boards == expected_boards(start, generations)
    assert boards[generations].alive == {
        ((x + 3) % 6, (y + 3) % 6) for x, y in start.alive
    }
    assert run.wait() == 0, run.output
    assert (
        f"Playing board {board!r} (6x6, glider) for {generations} generations: "
        "36 cells in 36 processes"
    ) in run.output
    assert (
        f"Every cell reached generation {generations}. Stopped 36 processes."
    ) in run.output
    run.wait_until_all_ended()


@pytest.mark.e2e
@pytest.mark.timeout(E2E_TIMEOUT)
def test_the_page_shows_a_board_and_serves_its_script(
    tmp_path: Path, db_path: Path
) -> None:
    server = ServerProcess("runserver", example_env(db_path), tmp_path / "server.log")
    try:
        server.wait_until_listening()
        status, page = http_get(f"http://{server.address}/life/")
        assert status == 200
        assert "<h1>Game of Life: board demo</h1>" in page
        assert '<script id="board-name" type="application/json">"demo"</script>' in page
        assert '<code id="life-command">python manage.py gameoflife</code>' in page
        status, page = http_get(f"http://{server.address}/life/glider-1/")
        assert status == 200
        assert (
            '<script id="board-name" type="application/json">"glider-1"</script>'
            in page
        )
        assert "python manage.py gameoflife --board glider-1</code>" in page
        assert http_get(f"http://{server.address}/life/no.dots/")[0] == 404
        status, script = http_get(f"http://{server.address}/static/life/board.js")
        assert status == 200
        assert "/ws/life/${boardName}/watch/" in script
    finally:
        server.kill()


@pytest.mark.e2e
@pytest.mark.timeout(E2E_TIMEOUT)
@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
def test_ctrl_c_stops_the_command_and_every_cell_process(
    server: ServerProcess, start_run: Callable[..., Run]
) -> None:
    board = f"e2e-{uuid.uuid4().hex[:12]}"

    with watch(server.address, board) as watcher:
        run = start_run(
            f"--url=http://{server.address}",
            f"--board={board}",
            "--size=4x4",
            "--pattern=blinker",
            "--cells-per-process=3",
            "--delay=0.05",
        )
        watch_until(watcher, 4, 4, 3)
    # The command, six cell processes, and multiprocessing's fork server and
    # resource tracker.
    assert len(run.processes_left()) >= 8, run.processes_left()
    # As a terminal does: SIGINT to the whole foreground group.
    os.killpg(run.process.pid, signal.SIGINT)

    assert run.wait(timeout=30) == 0, run.output
    assert "16 cells in 6 processes" in run.output
    assert re.search(
        r"Interrupted at generation \d+\. Stopped 6 processes\.", run.output
    )
    assert "Traceback" not in run.output
    run.wait_until_all_ended()


@pytest.mark.e2e
@pytest.mark.timeout(E2E_TIMEOUT)
@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
def test_cell_processes_stop_when_the_command_is_killed(
    server: ServerProcess, start_run: Callable[..., Run]
) -> None:
    board = f"e2e-{uuid.uuid4().hex[:12]}"
    with watch(server.address, board) as watcher:
        run = start_run(
            f"--url=http://{server.address}",
            f"--board={board}",
            "--size=3x3",
            "--delay=0.05",
        )
        watch_until(watcher, 3, 3, 2)
    # The command, nine cell processes, and multiprocessing's helpers.
    assert len(run.processes_left()) >= 11, run.processes_left()

    run.process.kill()

    assert run.wait() == -signal.SIGKILL
    run.wait_until_all_ended()


@pytest.mark.e2e
@pytest.mark.timeout(E2E_TIMEOUT)
def test_cells_play_on_after_the_server_restarts(
    db_path: Path,
    tmp_path: Path,
    start_run: Callable[..., Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = f"e2e-{uuid.uuid4().hex[:12]}"
    generations = 40
    start = initial_board("random", 5, 5, seed=11)
    env = example_env(db_path, DJANGO_DEBUG="0", EXAMPLE_REALTIME="memory")
    first = ServerProcess("uvicorn", env, tmp_path / "first.log")
    try:
        first.wait_until_listening()
        with watch(first.address, board) as watcher:
            run = start_run(
                f"--url=http://{first.address}",
                f"--board={board}",
                "--size=5x5",
                "--pattern=random",
                "--seed=11",
                f"--generations={generations}",
                "--cells-per-process=5",
                "--delay=0.05",
            )
            watch_until(watcher, 5, 5, 3)
    finally:
        # A crash: the in-memory layer, its groups and messages in flight
        # are gone.
        first.kill()
    # The same port, so that the cells find the new server.
    port = int(first.address.rsplit(":", 1)[1])
    monkeypatch.setattr(test_chat_e2e, "free_port", lambda: port)
    second = ServerProcess("uvicorn", env, tmp_path / "second.log")
    try:
        second.wait_until_listening()
        with watch(second.address, board) as watcher:
            boards = watch_until(watcher, 5, 5, generations)
        assert run.wait() == 0, run.output
    finally:
        second.kill()

    expected = expected_boards(start, generations)
    assert boards, "no generation was complete after the restart"
    assert all(board == expected[number] for number, board in boards.items())
    assert f"Every cell reached generation {generations}." in run.output
    assert "lost its connection" in run.output


@pytest.mark.e2e
@pytest.mark.redis
@pytest.mark.timeout(E2E_TIMEOUT)
def test_cells_and_watchers_on_two_servers_meet_through_redis(
    db_path: Path, tmp_path: Path, start_run: Callable[..., Run]
) -> None:
    env = example_env(db_path, DJANGO_DEBUG="0", REDIS_URL="redis://127.0.0.1:6379")
    backend = subprocess.run(
        [sys.executable, "-c", CHANNEL_LAYER_BACKEND],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    if backend.startswith("channels_redis."):
        # Measured: at full speed the demo overflows channels-redis's one
        # inbox per server process (capacity 100) and loses messages faster
        # than cells ask again; and with redis-py 8, whose socket_timeout of
        # 5 s equals channels-redis's BZPOPMIN timeout, consumers idle for
        # 5 s crash. django_realtime's RedisChannelLayer plays it in 0.7 s.
        pytest.skip(f"the example project's Redis layer is {backend}")
    servers = [
        ServerProcess(name, env, tmp_path / f"{name}.log")
        for name in ("daphne", "uvicorn")
    ]
    # A board of its own: concurrent runs on the same Redis never meet.
    board = f"e2e-{uuid.uuid4().hex[:12]}"
    try:
        for server in servers:
            server.wait_until_listening()
        cells_server, page_server = servers
        with watch(page_server.address, board) as watcher:
            run = start_run(
                f"--url=http://{cells_server.address}",
                f"--board={board}",
                "--size=5x3",
                "--pattern=blinker",
                "--generations=6",
                "--cells-per-process=5",
                "--delay=0",
            )
            boards = watch_until(watcher, 5, 3, 6)
        assert run.wait() == 0, run.output
    finally:
        for server in servers:
            server.kill()

    assert boards == expected_boards(initial_board("blinker", 5, 3), 6)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--size=2x8"], "--size: Expected a width from 3 to 200 cells, got 2."),
        (["--board=no.dots"], "Expected a board name of 1 to 50 letters"),
        (["--generations=-1"], "Expected --generations >= 0, got -1."),
        (["--cells-per-process=0"], "Expected --cells-per-process >= 1, got 0."),
        (["--delay=-1"], "Expected --delay >= 0 seconds, got -1.0."),
        (
            ["--size=200x200"],
            "Expected at most 1000 processes, got 40000 (40000 cells, 1 per "
            "process): pass --cells-per-process 40 or more.",
        ),
        (["--pattern=spaceship"], "invalid choice: 'spaceship'"),
    ],
)
@pytest.mark.django_db  # the system checks manage.py runs may ask the database
def test_gameoflife_refuses_bad_options_with_the_fix(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # As manage.py runs it, in this process: the options are refused before
    # any cell process or connection is made.
    with pytest.raises(SystemExit) as exited:
        gameoflife.Command().run_from_argv(["manage.py", "gameoflife", *args])

    assert exited.value.code != 0
    stderr = capsys.readouterr().err
    assert error in stderr, stderr
