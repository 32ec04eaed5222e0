"""Play a Game of Life board with one client per cell: ``manage.py gameoflife``.

Every cell of the board is a WebSocket client of its own
(:mod:`example_project.life.client`), and by default each runs in an OS
process of its own; ``--cells-per-process K`` packs K cells into each
process for big boards. The server only relays what each cell says to its
neighbours; the rules run in the cells.

The command ends once every cell reached ``--generations``, or on Ctrl-C,
and stops every process it started before it returns. A cell process whose
command dies notices and stops too.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from example_project.life.rules import PATTERNS, initial_board
from example_project.life.topology import BOARD_NAME_PATTERN, parse_size
from example_project.life.views import DEFAULT_BOARD

if TYPE_CHECKING:
    from example_project.life.client import CellSpec, Progress, RunConfig

__all__ = ["MAX_PROCESSES", "CellProcesses", "Command"]

MAX_PROCESSES = 1000
"""The most cell processes one command starts; more cells share processes."""

# Seconds the cell processes get to close their sockets and exit once told
# to stop, before SIGTERM, then as long again before SIGKILL.
_STOP_TIMEOUT = 5.0

_LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}

_T = TypeVar("_T")


def _batched(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    """Split ``items`` into runs of ``size`` (itertools.batched is 3.12+)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def _context() -> ForkServerContext | SpawnContext:
    """Return the fastest safe way to start many processes here.

    The fork server imports the cell client once, then forks each process
    from that clean state; spawning imports it again in every process.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["example_project.life.client"])
        return context
    return multiprocessing.get_context("spawn")


class CellProcesses:
    """Start the cell processes of a run, follow them and stop them.

    Args:
        config: A :class:`~example_project.life.client.RunConfig`.
        groups: The cells of each process, as
            :class:`~example_project.life.client.CellSpec` sequences.
        log_level: The logging level of the cell processes.
    """

    def __init__(
        self, config: RunConfig, groups: Sequence[Sequence[CellSpec]], log_level: int
    ) -> None:
        self._config = config
        self._groups = groups
        self._log_level = log_level
        self._processes: list[BaseProcess] = []
        self._pipes: dict[Connection, int] = {}
        self._progress: dict[int, Progress] = {}

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def generation(self) -> int:
        """Return the generation every cell has reached."""
        if len(self._progress) < len(self._groups):
            return 0
        return min(progress.generation for progress in self._progress.values())

    @property
    def finished(self) -> bool:
        """Return whether every cell reached the last generation."""
        return len(self._progress) == len(self._groups) and all(
            progress.finished for progress in self._progress.values()
        )

    def start(self) -> None:
        """Start one process per group of cells."""
        from example_project.life.client import process_main

        context = _context()
        for index, specs in enumerate(self._groups):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=process_main,
                args=(self._config, list(specs), theirs, self._log_level),
                name=f"life-cells-{index}",
                daemon=False,
            )
            process.start()
            # Only the child holds its end now: when the child ends, reading
            # ours gives EOF.
            theirs.close()
            self._processes.append(process)
            self._pipes[ours] = index

    def follow(self, on_generation: Callable[[int], None]) -> None:
        """Wait until every cell finished, calling ``on_generation`` on each step.

        Raises:
            CommandError: A cell process ended before the run finished.
        """
        sentinels = {
            process.sentinel: index for index, process in enumerate(self._processes)
        }
        reached = 0
        while not self.finished:
            for ready in wait([*self._pipes, *sentinels]):
                if isinstance(ready, Connection):
                    self._read(ready)
                elif isinstance(ready, int) and ready in sentinels:
                    self._ended(sentinels[ready])
            if self.generation > reached:
                reached = self.generation
                on_generation(reached)

    def _read(self, pipe: Connection) -> None:
        index = self._pipes[pipe]
        try:
            self._progress[index] = pipe.recv()
        except (EOFError, OSError):
            # The process ended: its sentinel says how.
            del self._pipes[pipe]
            pipe.close()

    def _ended(self, index: int) -> None:
        process = self._processes[index]
        process.join()
        cells = ", ".join(f"({spec.x}, {spec.y})" for spec in self._groups[index])
        raise CommandError(
            f"The process of cells {cells} exited with status {process.exitcode} "
            "before the run finished; its error is above."
        )

    def stop(self) -> None:
        """Stop every process started: ask, then SIGTERM, then SIGKILL."""
        for pipe in self._pipes:
            # EOF on the child's end: it closes its sockets and exits.
            pipe.close()
        self._pipes.clear()
        for signal_them in (None, BaseProcess.terminate, BaseProcess.kill):
            alive = [process for process in self._processes if process.is_alive()]
            if signal_them is not None:
                for process in alive:
                    signal_them(process)
            deadline = time.monotonic() + _STOP_TIMEOUT
            for process in alive:
                process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            process.join(0)
            process.close()


class Command(BaseCommand):
    """Run the cells of a Game of Life board as WebSocket clients."""

    help = (
        "Play a Game of Life board with one WebSocket client per cell, each in "
        "its own process by default. The server only relays; open "
        "/life/<board>/ to watch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Take the server, the board, the pattern, the length and the pace."""
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000",
            help="The site's URL (default: http://127.0.0.1:8000).",
        )
        parser.add_argument(
            "--board",
            default=DEFAULT_BOARD,
            help=f"The board's name (default: {DEFAULT_BOARD!r}).",
        )
        parser.add_argument(
            "--size",
            default="8x8",
            help="The board's WIDTHxHEIGHT, from 3x3 (default: 8x8).",
        )
        parser.add_argument(
            "--pattern",
            choices=PATTERNS,
            default="glider",
            help="The cells alive at generation 0 (default: glider).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="The seed of the random pattern (default: a new board each run).",
        )
        parser.add_argument(
            "--generations",
            type=int,
            default=None,
            help="Stop after this many generations (default: play until Ctrl-C).",
        )
        parser.add_argument(
            "--cells-per-process",
            type=int,
            default=1,
            help="Cells, each a client of its own, per OS process (default: 1).",
        )
        parser.add_argument(
            "--delay",
            type=float,
            default=0.2,
            help=(
                "Seconds each cell waits before sending a new state, so that "
                "the page can be followed (default: 0.2; 0 plays at full speed)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the cell processes, follow the run, stop them all."""
        if importlib.util.find_spec("websockets") is None:
            raise CommandError(
                "gameoflife needs the websockets package for its cell clients: "
                'python -m pip install -e ".[example]"'
            )
        from example_project.life.client import CellSpec, RunConfig

        board: str = options["board"]
        if not re.fullmatch(BOARD_NAME_PATTERN, board):
            raise CommandError(
                "Expected a board name of 1 to 50 letters, digits, hyphens or "
                f"underscores, got {board!r}."
            )
        try:
            width, height = parse_size(options["size"])
        except ValueError as error:
            raise CommandError(f"--size: {error}") from error
        generations: int | None = options["generations"]
        if generations is not None and generations < 0:
            raise CommandError(f"Expected --generations >= 0, got {generations}.")
        per_process: int = options["cells_per_process"]
        if per_process < 1:
            raise CommandError(f"Expected --cells-per-process >= 1, got {per_process}.")
        delay: float = options["delay"]
        if not delay >= 0:
            raise CommandError(f"Expected --delay >= 0 seconds, got {delay}.")
        cells = width * height
        process_count = -(-cells // per_process)
        if process_count > MAX_PROCESSES:
            raise CommandError(
                f"Expected at most {MAX_PROCESSES} processes, got {process_count} "
                f"({cells} cells, {per_process} per process): pass "
                f"--cells-per-process {-(-cells // MAX_PROCESSES)} or more."
            )

        start = initial_board(options["pattern"], width, height, seed=options["seed"])
        specs = [
            CellSpec(x, y, (x, y) in start.alive)
            for y in range(height)
            for x in range(width)
        ]
        config = RunConfig(
            url=options["url"],
            board=board,
            width=width,
            height=height,
            until=generations,
            delay=delay,
            # Long enough for a busy machine, not to flood it with hellos.
            patience=2.0 + 4 * delay,
        )
        verbosity: int = options["verbosity"]
        processes = CellProcesses(
            config,
            _batched(specs, per_process),
            _LOG_LEVELS.get(verbosity, logging.DEBUG),
        )
        length = "until Ctrl-C" if generations is None else f"{generations} generations"
        self.stdout.write(
            f"Playing board {board!r} ({width}x{height}, {options['pattern']}) "
            f"for {length}: {cells} cells in {len(processes)} processes, on "
            f"{config.url}. Watch it at {config.url.rstrip('/')}/life/{board}/"
        )
        try:
            processes.start()
            processes.follow(self._progress_printer(verbosity))
        except KeyboardInterrupt:
            outcome = f"Interrupted at generation {processes.generation}."
        else:
            outcome = f"Every cell reached generation {processes.generation}."
        finally:
            processes.stop()
        self._end_line(verbosity)
        self.stdout.write(f"{outcome} Stopped {len(processes)} processes.")

    def _progress_printer(self, verbosity: int) -> Callable[[int], None]:
        live = verbosity == 1 and self.stdout.isatty()

        def show(generation: int) -> None:
            if verbosity >= 2:
                self.stdout.write(f"Generation {generation}: every cell is there.")
            elif live:
                self.stdout.write(f"\rGeneration {generation}", ending="")
                self.stdout.flush()

        return show

    def _end_line(self, verbosity: int) -> None:
        if verbosity == 1 and self.stdout.isatty():
            self.stdout.write("")
