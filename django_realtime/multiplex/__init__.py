"""Multiplexing: many consumers on one WebSocket, one per topic.

Route a socket to a :class:`Multiplexer` and the client opens topics on
it; each topic is served by an ordinary consumer class, run in process
with its own lifecycle, as it would be on a socket of its own::

    websocket_urlpatterns = [
        path("ws/", multiplex({
            "online": OnlineConsumer.as_asgi(),
            "chat/<slug:room>": ChatConsumer.as_asgi(),
        })),
    ]

Its stream topics are also served over SSE and long-polling, for clients
that cannot open a WebSocket, by :func:`multiplex_http_urls`. The guide is
``docs/topics/multiplexing.rst``; the wire format is
``docs/reference/multiplex-protocol.rst``.
"""

from django_realtime.multiplex.envelope import TOPIC_NAME, EnvelopeError
from django_realtime.multiplex.http import multiplex_http_urls
from django_realtime.multiplex.multiplexer import Multiplexer, multiplex
from django_realtime.multiplex.topics import TopicRoutes

__all__ = [
    "TOPIC_NAME",
    "EnvelopeError",
    "Multiplexer",
    "TopicRoutes",
    "multiplex",
    "multiplex_http_urls",
]
