"""WebSocket routes of the chat, for ``URLRouter`` in the project's asgi.py.

``ws/chat/`` is the room page's socket: a multiplexer whose topics are the
room's stream and who is in the room (``chat/<room>``, the same
:class:`ChatConsumer` as on the room's own route, with presence) and the
user's jobs (``jobs``, the jobs page's consumer). ``ws/chat/<room>/`` serves the
room's stream alone: for other clients, and for the page where WebSockets
fail (then the page falls back to server-sent events or long-polling).
"""

from django.urls import path

from django_realtime.middleware.limits import ConnectionLimits
from django_realtime.multiplex import multiplex
from example_project.chat import converters  # noqa: F401  (registers "room")
from example_project.chat.consumers import ChatConsumer
from example_project.jobs.consumers import JobsConsumer

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [
    # People type slowly: 10 messages a second, bursts of 30 (a reconnect
    # subscribes to every room at once), or the socket is closed with 4029.
    path(
        "ws/chat/",
        ConnectionLimits(  # type: ignore[arg-type]
            multiplex(
                {
                    "chat/<room:room_name>": ChatConsumer.as_asgi(),
                    "jobs": JobsConsumer.as_asgi(),
                },
                max_topics=8,
            ),
            rate=10,
            burst=30,
        ),
    ),
    path(
        "ws/chat/<room:room_name>/",
        ConnectionLimits(ChatConsumer.as_asgi(), rate=10, burst=30),  # type: ignore[arg-type]
    ),
]
