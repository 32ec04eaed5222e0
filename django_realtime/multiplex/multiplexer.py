"""The multiplexer: many consumers on one WebSocket, one per topic.

:class:`Multiplexer` is the ASGI application of the socket. It accepts the
handshake, then reads the client's envelopes
(:mod:`django_realtime.multiplex.envelope`): an ``open`` starts the
topic's consumer (the route's application, run in process as a
:class:`~django_realtime.multiplex.child.Child`, with its own scope and its
own channel on the layer) and sends it ``websocket.connect``; a ``frame``
goes to that consumer as ``websocket.receive``; a ``close`` sends it
``websocket.disconnect``. What the consumer sends comes back in its
topic's envelopes. The socket's end sends every consumer
``websocket.disconnect`` with the socket's code and waits for them.

A consumer that raises ends its topic only: the exception is logged and
the client gets the topic's ``close`` with 1011. Bad input gets an
``error`` frame naming the problem and the socket stays open:

- ``bad_envelope``: not a valid envelope;
- ``unknown_topic``: no route matches the topic of an ``open``;
- ``already_open``: an ``open`` of a topic that is open or opening;
- ``not_open``: a ``frame`` or ``close`` for a topic that is not open (a
  frame before its ``open`` frame came back, or after its end);
- ``too_many_topics``: an ``open`` past :attr:`Multiplexer.max_topics`.

A topic whose consumer falls behind, with more than
:attr:`Multiplexer.max_queued_frames` frames waiting for it, is closed with
4008 (the close code of a slow client), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django_realtime.multiplex.socket import MultiplexedSocket
from django_realtime.multiplex.topics import TopicRoutes
from django_realtime.types import ASGIApp

__all__ = ["Multiplexer", "multiplex"]

logger = logging.getLogger("django_realtime.multiplex")


class Multiplexer:
    """Serve many topics on one WebSocket, each by its own consumer.

    Args:
        routes: Topic pattern -> application, as ``path()`` routes
            (``{"chat/<room>": ChatConsumer.as_asgi()}``): see
            :mod:`django_realtime.multiplex.topics`.
        max_topics: Most topics open (or opening) at once on one socket.
        max_queued_frames: Most frames waiting for one topic's consumer;
            past it the topic is closed with 4008.

    Each consumer's scope is a copy of the socket's with
    ``scope["topic"]`` (the topic's name), ``scope["url_route"]`` (the
    values its pattern captured) and its own correlation id (the socket's,
    ``:`` and the topic's number on the socket).
    """

    max_topics: int = 32
    max_queued_frames: int = 64

    def __init__(
        self,
        routes: Mapping[str, ASGIApp],
        *,
        max_topics: int | None = None,
        max_queued_frames: int | None = None,
    ) -> None:
        self.routes = TopicRoutes(routes)
        if max_topics is not None:
            self.max_topics = max_topics
        if max_queued_frames is not None:
            self.max_queued_frames = max_queued_frames
        for name in ("max_topics", "max_queued_frames"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Expected {name} of at least 1, got {value!r}.")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the socket until it ends; then end every topic."""
        if scope["type"] != "websocket":
            raise ValueError(
                "Expected a 'websocket' scope for the multiplexer, "
                f"got {scope['type']!r}."
            )
        await MultiplexedSocket(self, scope, receive, send).run()


def multiplex(
    routes: Mapping[str, ASGIApp],
    *,
    max_topics: int | None = None,
    max_queued_frames: int | None = None,
) -> Multiplexer:
    """Return a :class:`Multiplexer` of ``routes``, for one line in routing.py."""
    return Multiplexer(
        routes, max_topics=max_topics, max_queued_frames=max_queued_frames
    )
