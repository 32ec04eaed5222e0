"""WebSocket routes of the chat, for ``URLRouter`` in the project's asgi.py."""

from django.urls import path

from example_project.chat import converters  # noqa: F401  (registers "room")
from example_project.chat.consumers import ChatConsumer

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [
    path("ws/chat/<room:room_name>/", ChatConsumer.as_asgi()),
]
