"""The server's side of the Game of Life: relay, and nothing else.

:class:`CellConsumer` serves the socket of one cell,
``ws/life/<board>/cell/<x>/<y>/?size=<width>x<height>``. It joins the
cell's group, and relays every JSON object the cell sends to the groups of
its eight neighbours (wrapping around the edges) and to the board's
watchers, with the sender's ``x``, ``y``, ``width`` and ``height`` set by
the server. ``"to"`` narrows it down: ``"to": "neighbours"`` leaves the
watchers out, and ``"to": [x, y]`` (an answer meant for one neighbour)
goes to that neighbour alone. :class:`WatchConsumer` serves a page
watching the board, ``ws/life/<board>/watch/``, and passes on what the
cells say to all.

The server knows the board's shape (:mod:`~example_project.life.topology`)
but neither the rules nor the state of any cell: it reads nothing of what
it relays but ``to``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from django_realtime import DenyConnection
from django_realtime.consumers import AsyncJsonWebsocketConsumer
from example_project.life.topology import (
    cell_group,
    neighbours,
    parse_size,
    watch_group,
)

__all__ = ["RELAY_TYPE", "CellConsumer", "WatchConsumer"]

logger = logging.getLogger(__name__)

RELAY_TYPE = "life.relay"
"""The channel layer message type of a relayed frame: ``{"type", "text"}``."""


class _RelayReceiver(AsyncJsonWebsocketConsumer):
    """Send relayed frames, already encoded once by their sender, as they are."""

    group_name: str = ""

    async def disconnect(self, code: int) -> None:
        """Leave the group joined at connect, if any."""
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def life_relay(self, event: dict[str, Any]) -> None:
        """Send a frame relayed from a cell."""
        await self.send(text_data=event["text"])


class CellConsumer(_RelayReceiver):
    """Relay what one cell says to its eight neighbours and the watchers."""

    board: str
    x: int
    y: int
    width: int
    height: int
    neighbour_groups: dict[tuple[int, int], str]

    async def connect(self) -> None:
        """Check the cell's size and position, join its group and accept."""
        kwargs = self.scope["url_route"]["kwargs"]
        self.board, self.x, self.y = kwargs["board"], kwargs["x"], kwargs["y"]
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            (size,) = query.get("size", [""])
            self.width, self.height = parse_size(size)
            cells = neighbours(self.x, self.y, self.width, self.height)
        except ValueError as error:
            # Refused before accept(): the client sees HTTP 403.
            logger.warning(
                "Refused cell (%s, %s) of board %r: %s Connect to "
                "ws/life/<board>/cell/<x>/<y>/?size=<width>x<height>.",
                self.x,
                self.y,
                self.board,
                error,
            )
            raise DenyConnection from error
        self.neighbour_groups = {(x, y): cell_group(self.board, x, y) for x, y in cells}
        self.group_name = cell_group(self.board, self.x, self.y)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def receive_json(self, content: Any) -> None:
        """Relay a JSON object; answer anything else with an error."""
        if not isinstance(content, dict):
            await self.send_json(
                {"error": f"Expected a JSON object, got {content!r:.100}."}
            )
            return
        targets = self._targets(content.get("to"))
        if targets is None:
            await self.send_json(
                {
                    "error": "Expected 'to' to be 'neighbours' or the [x, y] of a "
                    f"neighbour, one of {sorted(self.neighbour_groups)}, got "
                    f"{content['to']!r:.100}."
                }
            )
            return
        # The server vouches for who sent it and on which board shape.
        content.update(x=self.x, y=self.y, width=self.width, height=self.height)
        event = {"type": RELAY_TYPE, "text": self.encode_json(content)}
        for group in targets:
            await self.channel_layer.group_send(group, event)

    def _targets(self, to: Any) -> list[str] | None:
        """Return the groups to relay to, or ``None`` if ``to`` is no neighbour."""
        if to is None:
            return [*self.neighbour_groups.values(), watch_group(self.board)]
        if to == "neighbours":
            return list(self.neighbour_groups.values())
        if isinstance(to, list) and len(to) == 2:
            group = self.neighbour_groups.get((to[0], to[1]))
            if group is not None and not any(isinstance(c, bool) for c in to):
                return [group]
        return None


class WatchConsumer(_RelayReceiver):
    """Pass on to a page everything the cells of one board say."""

    async def connect(self) -> None:
        """Join the board's watchers and accept."""
        self.group_name = watch_group(self.scope["url_route"]["kwargs"]["board"])
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def receive_json(self, content: Any) -> None:
        """Answer with an error: watchers only listen."""
        await self.send_json({"error": "Watchers only listen; send nothing."})
