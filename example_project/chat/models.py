"""The chat's one model: a message, said by a user in a room."""

from django.conf import settings
from django.db import models

__all__ = ["MAX_MESSAGE_LENGTH", "Message"]

MAX_MESSAGE_LENGTH = 2000
"""The longest message, in characters, the chat saves."""


class Message(models.Model):
    """A message said in a room, saved before anyone hears it."""

    room = models.CharField(max_length=50)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=MAX_MESSAGE_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["room", "created_at"])]

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.text:.50}"
