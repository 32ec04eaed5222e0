"""The ``life_board`` path converter, shared by the page URLs and the socket routes.

A board name is 1 to 50 ASCII letters, digits, hyphens and underscores, so
that the board's group names are valid on every channel layer. A URL with
any other name matches no route: the page is a 404 and the WebSocket
handshake is refused.
"""

from django.urls import register_converter

from example_project.life.topology import BOARD_NAME_PATTERN

__all__ = ["BoardNameConverter"]


class BoardNameConverter:
    """Match a board name in a URL path."""

    regex = BOARD_NAME_PATTERN

    def to_python(self, value: str) -> str:
        """Return the board name as it appears in the path."""
        return value

    def to_url(self, value: str) -> str:
        """Return ``value`` for use in a path."""
        return value


# This module is imported once, so the converter is registered once.
register_converter(BoardNameConverter, "life_board")
