"""The page of a board: the grid, drawn live from what its cells say."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

__all__ = ["DEFAULT_BOARD", "board"]

DEFAULT_BOARD = "demo"
"""The board of ``/life/``, and of ``manage.py gameoflife`` without ``--board``."""


def board(request: HttpRequest, board_name: str = DEFAULT_BOARD) -> HttpResponse:
    """Show the board ``board_name``, and how to start its cells."""
    command = "python manage.py gameoflife"
    if board_name != DEFAULT_BOARD:
        command += f" --board {board_name}"
    return render(
        request, "life/board.html", {"board_name": board_name, "command": command}
    )
