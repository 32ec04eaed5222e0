"""The chat's models: rooms, and the messages said in them.

Rooms exist before anyone talks in them: a user with the ``chat.add_room``
permission (a superuser, or staff given it in the admin) creates them, on
the chat's index page or in the admin. Pages and sockets of a room that does
not exist are refused, so a visitor cannot make the site keep anything (a
row, a stream's history) for a name they made up.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from example_project.chat.converters import ROOM_NAME_PATTERN

__all__ = ["MAX_MESSAGE_LENGTH", "Message", "Room"]

MAX_MESSAGE_LENGTH = 2000
"""The longest message, in characters, the chat saves."""


class Room(models.Model):
    """A room people can talk in, by its name in URLs and stream names."""

    name = models.CharField(
        max_length=50,
        unique=True,
        validators=[
            RegexValidator(
                rf"\A{ROOM_NAME_PATTERN}\Z",
                "Expected 1 to 50 letters, digits, hyphens or underscores, "
                "got %(value)r.",
            )
        ],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """A message said in a room, saved before anyone hears it."""

    # The room's name is the column's value (to_field), as in URLs and
    # stream names: ``room_id`` is the name.
    room = models.ForeignKey(
        Room,
        to_field="name",
        db_column="room",
        on_delete=models.CASCADE,
        related_name="messages",
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=MAX_MESSAGE_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["room", "created_at"])]

    def __str__(self) -> str:
        return f"{self.author} in {self.room_id}: {self.text:.50}"
