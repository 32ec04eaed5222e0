"""The shape of a board: its size, and which cells are neighbours.

A board is a torus of ``width`` by ``height`` cells: the right edge touches
the left one and the bottom edge the top one, so every cell has exactly
eight neighbours. This is all the server knows of a board; the rules of the
game live in :mod:`~example_project.life.rules`, which only the cells import.

Everything here is a pure function.
"""

from __future__ import annotations

import re

__all__ = [
    "BOARD_NAME_PATTERN",
    "MAX_SIDE",
    "MIN_SIDE",
    "Coordinates",
    "cell_group",
    "neighbours",
    "parse_size",
    "size_problem",
    "watch_group",
]

Coordinates = tuple[int, int]
"""A cell's ``(x, y)``: column from the left, row from the top, from 0."""

BOARD_NAME_PATTERN = r"[A-Za-z0-9_-]{1,50}"
"""A board name: 1 to 50 ASCII letters, digits, hyphens and underscores."""

MIN_SIDE = 3
"""The narrowest side: below 3, a cell would be its own neighbour."""

MAX_SIDE = 200
"""The widest side, which keeps a board at 40,000 cells at most."""

_SIZE = re.compile(r"([0-9]+)x([0-9]+)")

# (dx, dy) of the eight neighbours, row by row.
_OFFSETS = tuple(
    (dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0)
)


def size_problem(width: int, height: int) -> str | None:
    """Return why ``width`` by ``height`` is not a board size, or ``None``."""
    for side, value in (("width", width), ("height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            return (
                f"Expected a {side} from {MIN_SIDE} to {MAX_SIDE} cells, got {value}."
            )
    return None


def parse_size(text: str) -> tuple[int, int]:
    """Return the ``(width, height)`` of a size written ``"8x8"``.

    Raises:
        ValueError: ``text`` is not ``WIDTHxHEIGHT``, or either side is out
            of bounds (:data:`MIN_SIDE` to :data:`MAX_SIDE`).
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"Expected a size such as '8x8' (WIDTHxHEIGHT), got {text!r}.")
    width, height = int(match[1]), int(match[2])
    problem = size_problem(width, height)
    if problem is not None:
        raise ValueError(problem)
    return width, height


def neighbours(x: int, y: int, width: int, height: int) -> tuple[Coordinates, ...]:
    """Return the eight neighbours of cell ``(x, y)``, wrapping at the edges.

    Raises:
        ValueError: The size is out of bounds, or ``(x, y)`` is not on the
            board.
    """
    problem = size_problem(width, height)
    if problem is not None:
        raise ValueError(problem)
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(
            f"Expected a cell of the {width}x{height} board, with 0 <= x < {width} "
            f"and 0 <= y < {height}, got ({x}, {y})."
        )
    return tuple(((x + dx) % width, (y + dy) % height) for dx, dy in _OFFSETS)


def cell_group(board: str, x: int, y: int) -> str:
    """Return the channel layer group of cell ``(x, y)`` of ``board``."""
    return f"life.{board}.{x}.{y}"


def watch_group(board: str) -> str:
    """Return the channel layer group of the pages watching ``board``."""
    return f"life.{board}.watch"
