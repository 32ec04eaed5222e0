from django.conf import settings
from django.db import models, transaction

from django_realtime.streams import publish

MAX_LENGTH = 1000


def room_stream(room_name):
    """Return the name of the stream of a room's messages."""
    return f"chat.{room_name}"


class Message(models.Model):
    room_name = models.SlugField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField(max_length=MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.author}: {self.text}"

    def as_data(self):
        """Return what the room's stream publishes of this message."""
        return {
            "type": "message",
            "id": self.pk,
            "author": self.author.get_username(),
            "text": self.text,
        }

    @classmethod
    def post(cls, room_name, author, text):
        """Save a message, and publish it to its room once it is committed."""
        with transaction.atomic():
            message = cls.objects.create(room_name=room_name, author=author, text=text)
            # Inside atomic(), publish() waits for the commit, and publishes
            # nothing if the transaction rolls back.
            publish(room_stream(room_name), message.as_data())
        return message
