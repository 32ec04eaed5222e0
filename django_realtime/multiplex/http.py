"""A multiplexer's topics over SSE and long-polling: those of stream consumers.

Over the HTTP transports (:mod:`django_realtime.streams.http`) no process
keeps a client's consumers between requests: each request makes the
consumer again and rebuilds its state from the client's stream positions.
That works for a :class:`~django_realtime.streams.StreamConsumer`, whose
state between frames is its subscriptions and their positions, and for no
other consumer, whose state lives in its process for the life of its
socket. So :func:`multiplex_http_urls` serves the topics of a
:class:`~django_realtime.multiplex.Multiplexer` whose route is a
``StreamConsumer`` subclass, each under its own URL (its topic name), by
the views of :class:`~django_realtime.streams.http.StreamHttpViews`; a
topic of any other consumer is refused with the error ``needs_socket``,
and a name no route matches with ``unknown_topic``. The guide is
``docs/topics/multiplexing.rst``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt

from django_realtime.multiplex.multiplexer import Multiplexer
from django_realtime.multiplex.topics import TopicMatch
from django_realtime.ops.logs import printable
from django_realtime.streams.consumer import StreamConsumer
from django_realtime.streams.http.views import StreamHttpViews
from django_realtime.streams.http.wire import error_body, sse_event

__all__ = ["NEEDS_SOCKET", "TopicHttpViews", "multiplex_http_urls"]

logger = logging.getLogger("django_realtime.multiplex")

#: The error of a topic whose consumer is not a stream consumer, over HTTP.
NEEDS_SOCKET = "needs_socket"

#: The close code that tells a client not to come back (``realtime.js``
#: stops reconnecting): the request can never succeed.
_POLICY = 1008

_TOPIC_URL = r"^(?P<topic>[A-Za-z0-9_.:@=~+/-]{1,200})/(?P<action>events|poll)?$"


def stream_consumer_class(route: TopicMatch) -> type[StreamConsumer] | None:
    """Return the StreamConsumer subclass that serves ``route``, or ``None``.

    Raises:
        ImproperlyConfigured: the consumer was routed with ``as_asgi()``
            arguments that are not class attributes (the HTTP transports
            make each consumer with none).
    """
    cls = getattr(route.app, "consumer_class", None)
    if not (isinstance(cls, type) and issubclass(cls, StreamConsumer)):
        return None
    initkwargs: dict[str, Any] = getattr(route.app, "consumer_initkwargs", {}) or {}
    if not initkwargs:
        return cls
    others = sorted(name for name in initkwargs if not hasattr(cls, name))
    if others:
        raise ImproperlyConfigured(
            f"Expected the as_asgi() arguments of topic {route.pattern!r} to be "
            f"attributes of {cls.__qualname__}, got {', '.join(others)}: the "
            "HTTP transports make its consumers without arguments."
        )
    # Attribute-style arguments become the class attributes of a subclass.
    named = type(cls.__name__, (cls,), dict(initkwargs))
    named.__qualname__ = cls.__qualname__
    named.__module__ = cls.__module__
    return named


class TopicHttpViews:
    """The HTTP transports of a multiplexer's stream topics, as one Django view.

    Args:
        multiplexer: The :class:`~django_realtime.multiplex.Multiplexer`
            routed for the WebSocket.
        **options: Keyword arguments of
            :class:`~django_realtime.streams.http.StreamHttpViews`, for
            every topic.
    """

    def __init__(self, multiplexer: Multiplexer, **options: Any) -> None:
        if not isinstance(multiplexer, Multiplexer):
            raise TypeError(
                f"Expected a Multiplexer (multiplex({{...}})), got {multiplexer!r}."
            )
        self.multiplexer = multiplexer
        self.options = options
        # One StreamHttpViews per route pattern, made when first asked.
        self._views: dict[str, StreamHttpViews | None] = {}

    def views_for(self, route: TopicMatch) -> StreamHttpViews | None:
        """Return the views of ``route``'s consumer; ``None``: it needs a socket."""
        if route.pattern not in self._views:
            cls = stream_consumer_class(route)
            views = None if cls is None else StreamHttpViews(cls, **self.options)
            self._views[route.pattern] = views
        return self._views[route.pattern]

    async def dispatch(
        self, request: HttpRequest, topic: str, action: str | None = None
    ) -> HttpResponseBase:
        """Serve ``POST <topic>/``, ``GET <topic>/events`` or ``GET <topic>/poll``."""
        route = self.multiplexer.routes.match(topic)
        if route is None:
            return self._refuse(
                request,
                action,
                404,
                "unknown_topic",
                f"No route matches topic {topic!r}.",
            )
        views = self.views_for(route)
        if views is None:
            name = getattr(route.app, "__qualname__", None) or repr(route.app)
            return self._refuse(
                request,
                action,
                409,
                NEEDS_SOCKET,
                f"Topic {topic!r} is served by {name}, which is not a "
                "StreamConsumer: it keeps its state in one process for the life "
                "of its socket, and the HTTP transports keep nothing between "
                "requests. It needs a WebSocket.",
            )
        base = getattr(request, "scope", None)
        if base is not None:
            # The consumer's scope, as on the multiplexed socket.
            request.scope = {**base, "topic": topic}  # type: ignore[attr-defined]
        if action == "events":
            return await views.events(request, **route.kwargs)
        if action == "poll":
            return await views.poll(request, **route.kwargs)
        return await views.post(request, **route.kwargs)

    @staticmethod
    def _refuse(
        request: HttpRequest, action: str | None, status: int, code: str, message: str
    ) -> HttpResponse:
        """Refuse in the way each transport's client reads: it will not retry."""
        logger.info(
            "Refused a %s to %s with %d (%s): %s",
            printable(str(request.method)),
            printable(request.path),
            status,
            code,
            printable(message),
        )
        if action == "events":
            # An EventSource cannot read an error's body: an error frame, then
            # the stream's close, in a stream.
            frame = {"kind": "error", "id": None, "code": code, "message": message}
            body = sse_event(json.dumps(frame)) + sse_event(
                json.dumps({"code": _POLICY}), "close"
            )
            response = HttpResponse(body, content_type="text/event-stream")
        else:
            response = HttpResponse(
                error_body(code, message, _POLICY),
                status=status,
                content_type="application/json",
            )
        response["Cache-Control"] = "no-store"
        return response


def multiplex_http_urls(multiplexer: Multiplexer, **options: Any) -> list[URLPattern]:
    """Return the URL patterns of ``multiplexer``'s topics over SSE and long-polling.

    Include them under the prefix of your choice, and give that prefix to
    ``realtime.js``'s ``multiplex(url, {httpUrl})``::

        MUX = multiplex({"chat/<slug:room>": ChatStreams.as_asgi(), ...})
        # urls.py
        path("realtime/", include(multiplex_http_urls(MUX)))

    Each topic served by a :class:`~django_realtime.streams.StreamConsumer`
    gets ``POST <prefix><topic>/`` (client frames), ``GET
    <prefix><topic>/events`` (server-sent events) and ``GET
    <prefix><topic>/poll`` (long-polling), as
    :func:`~django_realtime.streams.http.stream_http_urls` serves a
    consumer of its own; the others answer ``needs_socket``.

    Args:
        multiplexer: The multiplexer routed for the WebSocket.
        **options: Keyword arguments of
            :class:`~django_realtime.streams.http.StreamHttpViews`
            (``poll_timeout``, ``client_expiry``, ``rate``...).
    """
    views = TopicHttpViews(multiplexer, **options)
    for route in multiplexer.routes:
        stream_consumer_class(route)  # fail when the URLs load, not later
    return [
        re_path(_TOPIC_URL, csrf_exempt(views.dispatch), name="realtime-multiplex-http")
    ]
