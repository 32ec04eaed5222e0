"""Find where a project serves streams: the routes to its stream consumers.

``manage.py realtime tail`` connects to a path of the project's own ASGI
application, because a consumer may decide what a connection reads from
its URL (a room's name) and its middleware (the user). Without ``--path``
it uses the only route to a
:class:`~django_realtime.streams.consumer.StreamConsumer`, when there is
exactly one and it captures nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.management.base import CommandError

from django_realtime.ops.cli.arguments import USAGE_ERROR
from django_realtime.routing import ProtocolTypeRouter, URLRouter
from django_realtime.streams.consumer import StreamConsumer

__all__ = ["StreamRoute", "default_stream_path", "stream_routes"]

# Where middleware keeps the application it wraps (ours, Channels', Django's).
_INNER_ATTRIBUTES = ("inner", "application", "app")
_PATTERN_CHARACTERS = frozenset("<>()[]{}^$\\*+?|")


@dataclass(frozen=True)
class StreamRoute:
    """A WebSocket route to a stream consumer.

    Attributes:
        pattern: The route's patterns from the outermost router, joined
            (``"ws/chat/<room:room_name>/"``).
        consumer: The consumer class.
    """

    pattern: str
    consumer: type[StreamConsumer]

    @property
    def path(self) -> str | None:
        """Return the one path the route matches, or ``None`` if it captures."""
        if _PATTERN_CHARACTERS.intersection(self.pattern):
            return None
        return "/" + self.pattern.lstrip("/")

    def __str__(self) -> str:
        return f"{self.pattern} ({self.consumer.__module__}.{self.consumer.__name__})"


def stream_routes(application: object) -> list[StreamRoute]:
    """Return the routes of ``application`` to stream consumers, in order.

    The walk follows the ``"websocket"`` entry of a
    :class:`~django_realtime.routing.ProtocolTypeRouter`, every route of a
    :class:`~django_realtime.routing.URLRouter`, and middleware that keeps
    the application it wraps in an ``inner``, ``application`` or ``app``
    attribute, down to the applications of ``Consumer.as_asgi()``.
    """
    found: list[StreamRoute] = []
    _walk(application, "", found, 0)
    return found


def _walk(
    application: object, prefix: str, found: list[StreamRoute], depth: int
) -> None:
    if depth > 100:  # A wrapper that wraps itself: nothing to see.
        return
    if isinstance(application, ProtocolTypeRouter):
        websocket = application.application_mapping.get("websocket")
        if websocket is not None:
            _walk(websocket, prefix, found, depth + 1)
        return
    if isinstance(application, URLRouter):
        for route in application.routes:
            _walk(route.application, prefix + str(route.pattern), found, depth + 1)
        return
    consumer = getattr(application, "consumer_class", None)
    if consumer is not None:
        if isinstance(consumer, type) and issubclass(consumer, StreamConsumer):
            found.append(StreamRoute(prefix, consumer))
        return
    for name in _INNER_ATTRIBUTES:
        inner = getattr(application, name, None)
        if inner is not None and inner is not application and callable(inner):
            _walk(inner, prefix, found, depth + 1)
            return


def default_stream_path(application: object) -> str:
    """Return the path of the only route of ``application`` to a stream consumer.

    Raises:
        CommandError: there is none, several, or it captures part of the
            path (exit code :data:`USAGE_ERROR`); the message lists the
            routes and asks for ``--path``.
    """
    routes = stream_routes(application)
    if len(routes) == 1 and routes[0].path is not None:
        return routes[0].path
    if not routes:
        raise CommandError(
            "Found no route to a StreamConsumer in ASGI_APPLICATION: give the "
            "path a client connects to with --path (such as --path /ws/streams/).",
            returncode=USAGE_ERROR,
        )
    listed = "; ".join(map(str, routes))
    raise CommandError(
        "Expected one route to a StreamConsumer that captures nothing, found "
        f"{listed}: give the path a client connects to with --path "
        "(such as --path /ws/chat/lobby/).",
        returncode=USAGE_ERROR,
    )
