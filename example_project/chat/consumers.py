"""The chat's stream consumer.

Each room is a stream, ``chat.<room>``, whose publications are the room's
messages as they are saved: ``{"type": "message", "id": ..., "author":
"...", "text": "...", "created": "..."}``, ``id`` being the row's primary
key and ``created`` when it was saved (ISO 8601, with its UTC offset). Only logged-in
users get a socket, only to a room that exists, and the socket of
``/ws/chat/<room>/`` may subscribe to that room's stream alone.

The room has presence: a page that subscribes to ``presence:chat.<room>``
is a member of the room (the logged-in user, by id and username) and
sees who else is there (:mod:`django_realtime.presence`).

A page posts a message with a ``post`` request, ``{"text": "..."}``. The
consumer saves it as a :class:`~example_project.chat.models.Message` row and
publishes it in the same transaction, so that it reaches the room once the
row has committed, and never if it has not; the reply is ``{"id": ...}``.
A message the chat cannot take is refused with a
:class:`~django_realtime.streams.RequestError`: code ``invalid`` (the
message says what was wrong) or ``not_saved``.
"""

import logging
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DatabaseError, transaction

from django_realtime import DenyConnection
from django_realtime.ops.logs import printable
from django_realtime.presence import PresenceConsumer
from django_realtime.streams import RequestError, publish
from example_project.chat.models import MAX_MESSAGE_LENGTH, Message, Room

__all__ = ["ChatConsumer", "message_data", "post_message", "room_stream"]

logger = logging.getLogger(__name__)


def room_stream(room: str) -> str:
    """Return the name of the stream of ``room``'s messages."""
    return f"chat.{room}"


def message_data(message: Message) -> dict[str, Any]:
    """Return what the room's stream publishes of ``message``."""
    return {
        "type": "message",
        "id": message.pk,
        "author": message.author.get_username(),
        "text": message.text,
        "created": message.created_at.isoformat(),
    }


def _text_problem(data: Any) -> str | None:
    """Return why ``data`` is not a chat message, or ``None`` if it is one."""
    if not isinstance(data, dict) or "text" not in data:
        return f'Expected an object {{"text": "..."}}, got {data!r:.100}.'
    text = data["text"]
    if not isinstance(text, str):
        return f"Expected the text as a string, got {type(text).__name__}."
    if not text.strip():
        return "Expected a message with some text, got an empty one."
    if len(text) > MAX_MESSAGE_LENGTH:
        return (
            f"Expected a message of at most {MAX_MESSAGE_LENGTH} characters, "
            f"got {len(text)}."
        )
    return None


def post_message(*, room: str, author: AbstractBaseUser, text: str) -> Message:
    """Save a message of ``room``, and publish it to the room once committed.

    Raises:
        DatabaseError: The row could not be saved (the room or the author is
            gone, say); nothing was published.
    """
    with transaction.atomic():
        message = Message.objects.create(room_id=room, author=author, text=text)
        # Inside atomic(), publish() waits for the commit, and publishes
        # nothing if the transaction rolls back: nobody hears of a message
        # that was never saved.
        publish(room_stream(room), message_data(message))
    return message


class ChatConsumer(PresenceConsumer):
    """Serve one room's stream and presence to its members; save what they post."""

    room_name: str

    async def connect(self) -> None:
        """Refuse anonymous users and rooms that do not exist; accept the rest."""
        # The route's "room" converter has already validated the name.
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        if not self.scope["user"].is_authenticated:
            # Refused before accept(), the handshake fails with HTTP 403, as
            # for a foreign origin.
            raise DenyConnection
        if not await Room.objects.filter(name=self.room_name).aexists():
            # Nothing is kept for a room nobody created: no stream is read.
            logger.warning(
                "Refused a socket of %r to room %s: no such room.",
                self.scope["user"].get_username(),
                printable(self.room_name),
            )
            raise DenyConnection
        await self.accept()

    async def authorize_stream(self, stream: str) -> bool:
        """Allow the stream of this socket's room, and nothing else."""
        return stream == room_stream(self.room_name)

    def tracks_presence(self, stream: str) -> bool:
        """Say who is in the room: the room's stream has presence."""
        return stream == room_stream(self.room_name)

    def request_post(self, data: Any) -> dict[str, Any]:
        """Save a message said in the room and publish it; return its id.

        A plain method: the consumer runs it in a thread, where the ORM and
        its transactions work as in a view.
        """
        problem = _text_problem(data)
        if problem is not None:
            logger.warning("Refused a message in room %r: %s", self.room_name, problem)
            raise RequestError("invalid", problem)
        user = self.scope["user"]
        try:
            message = post_message(room=self.room_name, author=user, text=data["text"])
        except DatabaseError:
            logger.exception(
                "Could not save a message of %r in room %r",
                user.get_username(),
                self.room_name,
            )
            raise RequestError(
                "not_saved", "Your message could not be saved."
            ) from None
        return {"id": message.pk}
