"""The chat's WebSocket consumer.

Only logged-in users get a socket. Every socket of a room joins the group
``chat_<room>``. A message a client sends, ``{"message": "..."}``, is saved
as a :class:`~example_project.chat.models.Message` row, and once that row has
committed the group relays it to every socket in the room, the sender's
included, as ``{"id": ..., "author": "...", "message": "..."}``. A message
the chat cannot take is answered with ``{"error": "..."}`` to its sender
alone.
"""

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError, transaction

from django_realtime import DenyConnection, send_to_group
from django_realtime.consumers import AsyncJsonWebsocketConsumer
from example_project.chat.models import MAX_MESSAGE_LENGTH, Message

__all__ = ["ChatConsumer", "save_and_broadcast"]

logger = logging.getLogger(__name__)


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


def save_and_broadcast(
    *, room: str, group: str, author: AbstractBaseUser, text: str
) -> None:
    """Save a message of ``room``, and send it to ``group`` once committed.

    Raises:
        DatabaseError: The row could not be saved; nothing was sent.
    """
    with transaction.atomic():
        message = Message.objects.create(room=room, author=author, text=text)
        # Inside atomic(), send_to_group() waits for the commit, and sends
        # nothing if the transaction rolls back: nobody hears of a message
        # that was never saved.
        send_to_group(
            group,
            {
                "type": "chat.message",
                "id": message.pk,
                "author": author.get_username(),
                "message": message.text,
            },
        )


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Save the chat messages of one room and relay them to its sockets."""

    room_name: str
    room_group_name: str

    async def connect(self) -> None:
        """Refuse anonymous users; join the room's group and accept the rest."""
        # The route's "room" converter has already validated the name.
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        if not self.scope["user"].is_authenticated:
            # Refused before accept(), the handshake fails with HTTP 403, as
            # for a foreign origin. A close code (such as 4401) would not
            # reach the browser before accept(), so DenyConnection gives none.
            raise DenyConnection
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the room's group."""
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive_json(self, content: Any) -> None:
        """Save a valid message and relay it; answer anything else with an error."""
        problem = _message_problem(content)
        if problem is not None:
            logger.warning("Refused a message in room %r: %s", self.room_name, problem)
            await self.send_json({"error": problem})
            return
        user = self.scope["user"]
        try:
            # The ORM and its transactions are sync: run them in a thread.
            await sync_to_async(save_and_broadcast)(
                room=self.room_name,
                group=self.room_group_name,
                author=user,
                text=content["message"],
            )
        except DatabaseError:
            logger.exception(
                "Could not save a message of %r in room %r",
                user.get_username(),
                self.room_name,
            )
            await self.send_json({"error": "Your message could not be saved."})

    async def chat_message(self, event: dict[str, Any]) -> None:
        """Send a saved message of the room to this socket."""
        await self.send_json(
            {"id": event["id"], "author": event["author"], "message": event["message"]}
        )
