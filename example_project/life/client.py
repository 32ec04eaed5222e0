"""Cell clients: the networking shell around :class:`~example_project.life.cell.Cell`.

Each cell is its own WebSocket client of ``ws/life/<board>/cell/<x>/<y>/``,
which paces what it sends to stay under the server's message rate
(:mod:`~example_project.life.pace`).
:func:`run_cells` runs some cells in one event loop; :func:`process_main` is
the body of one cell process started by ``manage.py gameoflife``, which
reports progress to the command through a pipe and stops when the command
closes that pipe, when it dies, or on SIGINT or SIGTERM.

This module imports neither Django nor the project's settings, so that
cell processes start quickly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Origin

from example_project.life.cell import Cell, Message, State, decode, encode
from example_project.life.pace import PACE_BURST, PACE_RATE, Pacer

__all__ = [
    "CellClientError",
    "CellSpec",
    "PacedSender",
    "Progress",
    "RunConfig",
    "cell_url",
    "origin_of",
    "process_main",
    "run_cells",
]

logger = logging.getLogger(__name__)

# Waits between attempts to connect, doubling from the first to the last.
_FIRST_RETRY = 0.2
_LAST_RETRY = 5.0
_OPEN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 2.0


class CellClientError(Exception):
    """A cell cannot play: the server refused its socket, or the URL is wrong."""


@dataclass(frozen=True)
class CellSpec:
    """A cell to run: its position and its state at generation 0."""

    x: int
    y: int
    alive: bool


@dataclass(frozen=True)
class RunConfig:
    """What every cell of a run shares.

    Attributes:
        url: The site, ``http://127.0.0.1:8000``; ``ws`` and ``wss`` work too.
        board: The board's name.
        width: Columns of the board.
        height: Rows of the board.
        until: The last generation, or ``None`` to play until stopped.
        delay: Seconds a cell waits, on average, before sending each new
            state, so that people can follow the board.
        patience: Seconds a cell waits without stepping before it asks its
            neighbours again.
    """

    url: str
    board: str
    width: int
    height: int
    until: int | None = None
    delay: float = 0.0
    patience: float = 2.0


@dataclass(frozen=True)
class Progress:
    """What a process reports: its slowest cell's generation, and if all finished."""

    generation: int
    finished: bool


def origin_of(url: str) -> str:
    """Return the ``Origin`` a page of ``url``'s site would send.

    The server checks it against ``ALLOWED_HOSTS``.
    """
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def cell_url(config: RunConfig, x: int, y: int) -> str:
    """Return the WebSocket URL of cell ``(x, y)``.

    Raises:
        CellClientError: ``config.url`` is not an http, https, ws or wss URL.
    """
    parts = urlsplit(config.url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in {"ws", "wss"} or not parts.netloc:
        raise CellClientError(
            f"Expected the site's URL, such as http://127.0.0.1:8000, got "
            f"{config.url!r}."
        )
    return (
        f"{scheme}://{parts.netloc}/ws/life/{config.board}/cell/{x}/{y}/"
        f"?size={config.width}x{config.height}"
    )


class _Tracker:
    """Follow the generations of a process's cells; report when they change."""

    def __init__(self, cells: Sequence[Cell], report: Callable[[Progress], None]):
        self._report = report
        self._known = {cell.position: cell.generation for cell in cells}
        self._generations = Counter(self._known.values())
        self._finished: set[tuple[int, int]] = set()
        self._last = Progress(min(self._generations), False)

    def update(self, cell: Cell) -> None:
        """Take the cell's generation and whether it finished; report changes."""
        before = self._known[cell.position]
        if cell.generation != before:
            self._known[cell.position] = cell.generation
            self._generations[before] -= 1
            if not self._generations[before]:
                del self._generations[before]
            self._generations[cell.generation] += 1
        if cell.finished:
            self._finished.add(cell.position)
        progress = Progress(
            min(self._generations), len(self._finished) == len(self._known)
        )
        if progress != self._last:
            self._last = progress
            self._report(progress)


class PacedSender:
    """Send a cell's messages on one connection, under the server's rate limit.

    Make one per connection, in the event loop that runs it: the server's
    limit starts afresh with each connection.
    """

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.loop = asyncio.get_running_loop()
        # The server's bucket is full on a new connection; so is this one.
        self.pacer = Pacer(PACE_RATE, PACE_BURST, self.loop.time())

    async def send(self, messages: Iterable[Message]) -> None:
        """Send ``messages`` in order, each once the pace allows it."""
        for message in messages:
            wait = self.pacer.take(self.loop.time())
            if wait:
                # Over the pace: the server would close the socket with 4029.
                await asyncio.sleep(wait)
            await self.socket.send(json.dumps(encode(message)))


async def _ask_again(out: PacedSender, cell: Cell, now: float) -> None:
    """Send a hello if the cell waited too long: a message may have been lost."""
    hello = cell.poll(now)
    if hello:
        logger.info(
            "Cell %s at generation %s still waits for %s: asking again.",
            cell.position,
            cell.generation,
            sorted(cell.missing()) or "its neighbours to finish",
        )
        await out.send(hello)


async def _play(
    socket: ClientConnection, cell: Cell, config: RunConfig, tracker: _Tracker
) -> None:
    """Exchange states on one connection until it closes."""
    loop = asyncio.get_running_loop()
    out = PacedSender(socket)
    if cell.generation == 0 and config.delay:
        # Cells starting together would greet in one burst: spread them.
        await asyncio.sleep(random.uniform(0, config.delay))
    await out.send(cell.greet(loop.time()))
    while True:
        try:
            async with asyncio.timeout(cell.patience):
                frame = await socket.recv(decode=True)
        except TimeoutError:
            await _ask_again(out, cell, loop.time())
            continue
        try:
            content = json.loads(frame)
            if isinstance(content, dict) and "error" in content:
                logger.error(
                    "The server refused a message of cell %s: %s",
                    cell.position,
                    content["error"],
                )
                continue
            sender, message = decode(content)
            replies = cell.receive(sender, message, loop.time())
        except ValueError as error:
            # ProtocolError and json.JSONDecodeError are ValueErrors. A frame
            # the cell cannot take changes nothing: say so and go on.
            logger.warning("Cell %s ignored a frame: %s", cell.position, error)
            continue
        # Before anything that may fail with the connection.
        tracker.update(cell)
        if replies and isinstance(message, State) and config.delay:
            # New states of this cell: pace the game for the people watching.
            # Without the jitter, every cell would send at the same instant,
            # a burst that can overflow the channel of a watching page.
            await asyncio.sleep(config.delay * random.uniform(0.5, 1.5))
        await out.send(replies)
        await _ask_again(out, cell, loop.time())


async def _run_cell(cell: Cell, config: RunConfig, tracker: _Tracker) -> None:
    """Play one cell, reconnecting whenever its connection is lost."""
    url = cell_url(config, *cell.position)
    retry = _FIRST_RETRY
    while True:
        try:
            async with connect(
                url,
                origin=Origin(origin_of(config.url)),
                proxy=None,
                compression=None,
                open_timeout=_OPEN_TIMEOUT,
                close_timeout=_CLOSE_TIMEOUT,
            ) as socket:
                retry = _FIRST_RETRY
                await _play(socket, cell, config, tracker)
        except InvalidURI as error:
            raise CellClientError(f"Cannot connect to {url}: {error}") from error
        except InvalidHandshake as error:
            # Refused (HTTP 403 or 404): trying again cannot help.
            raise CellClientError(
                f"The server refused the socket of cell {cell.position} at {url}: "
                f"{error}. Is the URL the site's, and its host in ALLOWED_HOSTS?"
            ) from error
        except (OSError, TimeoutError, ConnectionClosed) as error:
            logger.warning(
                "Cell %s lost its connection to %s (%s); retrying in %.1f s.",
                cell.position,
                url,
                error or type(error).__name__,
                retry,
            )
        await asyncio.sleep(retry)
        retry = min(retry * 2, _LAST_RETRY)


async def run_cells(
    config: RunConfig,
    specs: Iterable[CellSpec],
    report: Callable[[Progress], None] = lambda progress: None,
) -> None:
    """Play the cells ``specs`` of a board, each on its own connection.

    Return only once every cell reached ``config.until`` and heard its
    neighbours reach it too (never, if ``until`` is ``None``); cancel the
    task to stop earlier.

    Args:
        config: The run's board, server and pace.
        specs: The cells to play.
        report: Called whenever the slowest cell steps, and once all cells
            finished.

    Raises:
        CellClientError: The server refused a cell's socket.
    """
    cells = [
        Cell(
            spec.x,
            spec.y,
            config.width,
            config.height,
            spec.alive,
            until=config.until,
            # Cells that ask again in step make bursts that may themselves
            # overflow channels and be lost.
            patience=config.patience * random.uniform(0.75, 1.25),
        )
        for spec in specs
    ]
    finished = asyncio.Event()

    def on_progress(progress: Progress) -> None:
        report(progress)
        if progress.finished:
            finished.set()

    tracker = _Tracker(cells, on_progress)
    players = [asyncio.create_task(_run_cell(cell, config, tracker)) for cell in cells]
    # Finished cells stay connected until every cell of the process is, to
    # answer neighbours that ask again.
    waiter = asyncio.create_task(finished.wait())
    try:
        done, _ = await asyncio.wait(
            [*players, waiter], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            # A player only ends by raising: raise its error here.
            task.result()
    finally:
        for task in [*players, waiter]:
            task.cancel()
        # Let each connection close cleanly.
        await asyncio.gather(*players, waiter, return_exceptions=True)


async def _serve_parent(
    config: RunConfig, specs: list[CellSpec], parent: Connection
) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is None:
        raise RuntimeError("Expected to run in a task, as asyncio.run() does.")
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main.cancel)

    def on_parent() -> None:
        # The command closes the pipe to stop this process; EOF also comes
        # when the command died.
        try:
            parent.recv()
        except (EOFError, OSError):
            loop.remove_reader(parent.fileno())
            main.cancel()

    loop.add_reader(parent.fileno(), on_parent)

    def report(progress: Progress) -> None:
        try:
            parent.send(progress)
        except OSError:
            main.cancel()

    try:
        await run_cells(config, specs, report)
        # Finished: stay, answering neighbours, until the command says stop.
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        return 0
    except CellClientError as error:
        logger.error("%s", error)
        return 1
    return 0


def process_main(
    config: RunConfig, specs: list[CellSpec], parent: Connection, log_level: int
) -> None:
    """Play ``specs`` until the command closes ``parent``; the body of a process.

    Exit with status 1 if the server refused a cell, 0 otherwise.
    """
    logging.basicConfig(
        level=log_level,
        format="%(processName)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(asyncio.run(_serve_parent(config, specs, parent)))
