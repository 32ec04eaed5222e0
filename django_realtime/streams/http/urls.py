"""Mount the HTTP stream transports of a consumer under one URL prefix."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

from django_realtime.streams.consumer import StreamConsumer
from django_realtime.streams.http.views import StreamHttpViews

__all__ = ["stream_http_urls"]


def stream_http_urls(
    consumer_class: type[StreamConsumer], **options: Any
) -> list[URLPattern]:
    """Return the URL patterns of ``consumer_class``'s HTTP transports.

    Include them under the prefix of your choice, next to the WebSocket
    route::

        path("realtime/chat/", include(stream_http_urls(ChatConsumer)))

    That serves ``POST <prefix>`` (client frames), ``GET <prefix>events``
    (server-sent events) and ``GET <prefix>poll`` (long-polling).

    Args:
        consumer_class: The :class:`StreamConsumer` subclass to serve.
        **options: Keyword arguments of
            :class:`~django_realtime.streams.http.views.StreamHttpViews`
            (``poll_timeout``, ``poll_linger``, ``client_expiry``, ``heartbeat``,
            ``max_body``, ``allowed_origins``, ``rate``, ``burst``).
    """
    views = StreamHttpViews(consumer_class, **options)
    # The views run Django's CSRF check themselves (on POST), to answer in
    # JSON; the GET views refuse other methods.
    return [
        path("", csrf_exempt(views.post), name="realtime-stream-post"),
        path("events", csrf_exempt(views.events), name="realtime-stream-events"),
        path("poll", csrf_exempt(views.poll), name="realtime-stream-poll"),
    ]
