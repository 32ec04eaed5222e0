"""The chat's WebSocket consumer.

Every socket of a room joins the group ``chat_<room>``. A message a client
sends, ``{"message": "..."}``, goes to the group, and the group relays it to
every socket in the room, the sender's included. A message the chat cannot
take is answered with ``{"error": "..."}`` to its sender alone.
"""

import logging
from typing import Any

from django_realtime.consumers import AsyncJsonWebsocketConsumer

__all__ = ["MAX_MESSAGE_LENGTH", "ChatConsumer"]

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 2000
"""The longest message, in characters, the chat relays."""


def _message_problem(content: Any) -> str | None:
    """Return why ``content`` is not a chat message, or ``None`` if it is one."""
    if not isinstance(content, dict) or "message" not in content:
        return f'Expected an object {{"message": "..."}}, got {content!r:.100}.'
    message = content["message"]
    if not isinstance(message, str):
        return f"Expected the message as a string, got {type(message).__name__}."
    if not message.strip():
        return "Expected a message with some text, got an empty one."
    if len(message) > MAX_MESSAGE_LENGTH:
        return (
            f"Expected a message of at most {MAX_MESSAGE_LENGTH} characters, "
            f"got {len(message)}."
        )
    return None


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Relay chat messages between the sockets of one room."""

    room_name: str
    room_group_name: str

    async def connect(self) -> None:
        """Join the room's group, then accept the socket."""
        # The route's "room" converter has already validated the name.
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the room's group."""
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive_json(self, content: Any) -> None:
        """Send a valid message to the room; answer anything else with an error."""
        problem = _message_problem(content)
        if problem is not None:
            logger.warning("Refused a message in room %r: %s", self.room_name, problem)
            await self.send_json({"error": problem})
            return
        await self.channel_layer.group_send(
            self.room_group_name,
            {"type": "chat.message", "message": content["message"]},
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        """Send a message of the room to this socket."""
        await self.send_json({"message": event["message"]})
