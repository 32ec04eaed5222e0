"""WebSocket routes of the chat, for ``URLRouter`` in the project's asgi.py."""

from django.urls import path

from django_realtime.middleware.limits import ConnectionLimits
from example_project.chat import converters  # noqa: F401  (registers "room")
from example_project.chat.consumers import ChatConsumer

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [
    # People type slowly: 10 messages a second, bursts of 30 (a reconnect
    # subscribes to every room at once), or the socket is closed with 4029.
    path(
        "ws/chat/<room:room_name>/",
        ConnectionLimits(ChatConsumer.as_asgi(), rate=10, burst=30),  # type: ignore[arg-type]
    ),
]
