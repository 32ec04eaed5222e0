"""The rules of Conway's Game of Life, and the starting patterns.

Only the cells (and the tests, which compute the expected boards) use this
module; the server never imports it. Everything here is a pure function of
its arguments.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from example_project.life.topology import Coordinates, neighbours, size_problem

__all__ = ["PATTERNS", "Board", "initial_board", "next_state"]

PATTERNS = ("glider", "blinker", "random")
"""The names :func:`initial_board` knows."""

# Top left of the board, heading down and to the right (+1, +1) every four
# generations.
_GLIDER = ((1, 0), (2, 1), (0, 2), (1, 2), (2, 2))

# The share of live cells on a random board.
_RANDOM_DENSITY = 0.35


def next_state(alive: bool, live_neighbours: int) -> bool:
    """Return whether a cell lives in the next generation (rule B3/S23).

    A live cell with two or three live neighbours survives; a dead cell with
    exactly three is born; every other cell is dead next.

    Raises:
        ValueError: ``live_neighbours`` is not between 0 and 8.
    """
    if not 0 <= live_neighbours <= 8:
        raise ValueError(f"Expected 0 to 8 live neighbours, got {live_neighbours!r}.")
    return live_neighbours == 3 or (alive and live_neighbours == 2)


@dataclass(frozen=True)
class Board:
    """A whole board at one generation: its size and its live cells.

    The cells never hold a :class:`Board`, each knows only itself; boards
    are for starting a run and for checking one.
    """

    width: int
    height: int
    alive: frozenset[Coordinates]

    def __post_init__(self) -> None:
        problem = size_problem(self.width, self.height)
        if problem is not None:
            raise ValueError(problem)
        outside = sorted(
            (x, y)
            for x, y in self.alive
            if not (0 <= x < self.width and 0 <= y < self.height)
        )
        if outside:
            raise ValueError(
                f"Expected live cells on the {self.width}x{self.height} board, "
                f"got {outside}."
            )

    @classmethod
    def from_rows(cls, rows: Iterable[str]) -> Board:
        """Build a board from rows of ``#`` (alive) and ``.`` (dead)."""
        lines = [row.strip() for row in rows if row.strip()]
        widths = {len(line) for line in lines}
        if len(widths) != 1 or not set("".join(lines)) <= {"#", "."}:
            raise ValueError(
                f"Expected rows of equal length made of '#' and '.', got {lines!r}."
            )
        alive = frozenset(
            (x, y)
            for y, line in enumerate(lines)
            for x, mark in enumerate(line)
            if mark == "#"
        )
        return cls(widths.pop(), len(lines), alive)

    def rows(self) -> list[str]:
        """Return the board as rows of ``#`` (alive) and ``.`` (dead)."""
        return [
            "".join("#" if (x, y) in self.alive else "." for x in range(self.width))
            for y in range(self.height)
        ]

    def live_neighbours(self, x: int, y: int) -> int:
        """Return how many of the eight neighbours of ``(x, y)`` are alive."""
        return sum(
            cell in self.alive for cell in neighbours(x, y, self.width, self.height)
        )

    def step(self) -> Board:
        """Return the board of the next generation."""
        alive = frozenset(
            (x, y)
            for y in range(self.height)
            for x in range(self.width)
            if next_state((x, y) in self.alive, self.live_neighbours(x, y))
        )
        return Board(self.width, self.height, alive)

    def after(self, generations: int) -> Board:
        """Return the board ``generations`` generations later."""
        board = self
        for _ in range(generations):
            board = board.step()
        return board


def initial_board(
    pattern: str, width: int, height: int, *, seed: int | None = None
) -> Board:
    """Return the board of generation 0 for ``pattern``.

    Args:
        pattern: ``"glider"`` (in the top left corner, heading down and to
            the right), ``"blinker"`` (three cells in a row, in the middle)
            or ``"random"``.
        width: Columns of the board.
        height: Rows of the board.
        seed: The seed of a ``"random"`` board; the same seed gives the same
            board.

    Raises:
        ValueError: The pattern is unknown or the size is out of bounds.
    """
    problem = size_problem(width, height)
    if problem is not None:
        raise ValueError(problem)
    if pattern == "glider":
        return Board(width, height, frozenset(_GLIDER))
    if pattern == "blinker":
        cx, cy = width // 2, height // 2
        return Board(width, height, frozenset({(cx - 1, cy), (cx, cy), (cx + 1, cy)}))
    if pattern == "random":
        chance = random.Random(seed)
        alive = frozenset(
            (x, y)
            for y in range(height)
            for x in range(width)
            if chance.random() < _RANDOM_DENSITY
        )
        return Board(width, height, alive)
    raise ValueError(
        f"Expected a pattern among {', '.join(PATTERNS)}, got {pattern!r}."
    )
