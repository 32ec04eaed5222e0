"""Streams over HTTP: server-sent events and long-polling, with no sticky sessions.

Serve a :class:`~django_realtime.streams.StreamConsumer` to clients that
cannot open a WebSocket, with :func:`stream_http_urls`. See
``docs/topics/streams-http.rst``; the wire format is in
``docs/reference/streams-protocol.rst``.
"""

from django_realtime.streams.http.urls import stream_http_urls
from django_realtime.streams.http.views import CLIENT_HEADER, StreamHttpViews

__all__ = ["CLIENT_HEADER", "StreamHttpViews", "stream_http_urls"]
