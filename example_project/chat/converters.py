"""The ``room`` path converter, shared by the page URLs and the socket routes.

A room name is 1 to 50 ASCII letters, digits, hyphens and underscores, so
that ``chat.<room>`` is a valid stream name. A URL with any other name
matches no route: the page is a 404 and the WebSocket handshake is refused.
"""

from django.urls import register_converter

__all__ = ["ROOM_NAME_PATTERN", "RoomNameConverter"]

ROOM_NAME_PATTERN = r"[A-Za-z0-9_-]{1,50}"


class RoomNameConverter:
    """Match a room name in a URL path."""

    regex = ROOM_NAME_PATTERN

    def to_python(self, value: str) -> str:
        """Return the room name as it appears in the path."""
        return value

    def to_url(self, value: str) -> str:
        """Return ``value`` for use in a path."""
        return value


# This module is imported once, so the converter is registered once.
register_converter(RoomNameConverter, "room")
