"""The application ``realtime tail`` connects to in the command's tests.

``/ws/notes/`` serves anyone; a user may read ``notes.public`` and the
stream named after them (``notes.alice``), nobody else's. ``/ws/members/``
refuses anonymous connections at the handshake.
"""

from __future__ import annotations

from django.urls import path

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.exceptions import DenyConnection
from django_realtime.routing import ProtocolTypeRouter, URLRouter
from django_realtime.security import AllowedHostsOriginValidator
from django_realtime.streams import StreamConsumer


class NotesConsumer(StreamConsumer):
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        user = self.scope["user"]
        own = user.is_authenticated and stream == f"notes.{user.get_username()}"
        return stream == "notes.public" or own


class MembersConsumer(NotesConsumer):
    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            raise DenyConnection
        await self.accept()


websocket_urlpatterns = [
    path("ws/notes/", NotesConsumer.as_asgi()),
    path("ws/members/", MembersConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        )
    }
)
