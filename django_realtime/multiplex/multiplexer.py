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

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from django_realtime.consumers.frames import CLOSE_INTERNAL_ERROR, CLOSE_TOO_SLOW
from django_realtime.consumers.turn import Turn
from django_realtime.middleware.correlation import (
    KEY as CORRELATION_KEY,
    id_from_headers,
    new_correlation_id,
)
from django_realtime.multiplex.child import CLOSED, OPEN, Child
from django_realtime.multiplex.envelope import (
    CLOSE,
    FRAME,
    Envelope,
    EnvelopeError,
    error_frame,
    parse_binary,
    parse_text,
)
from django_realtime.multiplex.topics import TopicRoutes
from django_realtime.ops import lifecycle
from django_realtime.ops.logs import printable
from django_realtime.servers.daphne import flow_controlled
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
        await _Socket(self, scope, receive, send).run()


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


class _Socket:
    """One multiplexed connection: its topics and their consumers."""

    def __init__(self, owner: Multiplexer, scope: Any, receive: Any, send: Any) -> None:
        self.owner = owner
        self.scope = scope
        self.receive = receive
        self.base_send = self.send = flow_controlled(send, scope)
        self.topics: dict[str, Child] = {}
        self.children: set[Child] = set()
        self.opened = 0
        self.path = printable(scope.get("path", "?"))
        connection_id = scope.get(CORRELATION_KEY)
        if connection_id is None:
            headers = scope.get("headers") or ()
            connection_id = id_from_headers(headers) or new_correlation_id()
        self.connection_id: str = connection_id
        # What the drain needs of a connection it closes (its _close()).
        self._turn = Turn()
        self._close_sent = False
        self._tracked = False

    async def run(self) -> None:
        code = 1006
        try:
            message = await self.receive()
            if message["type"] != "websocket.connect":
                return
            if (reason := lifecycle.refusal(self.scope)) is not None:
                logger.debug("Refused WebSocket %s: %s.", self.path, reason)
                await self.send({"type": "websocket.close"})
                return
            await self.send({"type": "websocket.accept"})
            self._tracked = True
            lifecycle.opened(self)
            code = await self._serve()
        finally:
            await self._end_all(code)
            if self._tracked:
                lifecycle.closed(self)

    async def _serve(self) -> int:
        """Read the client's frames until the socket ends; return its code."""
        receive = self.receive
        topics = self.topics
        while True:
            message = await receive()
            kind = message["type"]
            if kind != "websocket.receive":
                if kind == "websocket.disconnect":
                    return int(message.get("code", 1005))
                continue
            text = message.get("text")
            try:
                if text is not None:
                    envelope = parse_text(text)
                else:
                    envelope = parse_binary(message.get("bytes") or b"")
                child = topics.get(envelope.topic)
                if envelope.kind == FRAME:
                    if child is None or child.state != OPEN:
                        raise EnvelopeError(
                            "not_open",
                            f"Topic {envelope.topic!r} is not open: send its "
                            "frames after its 'open' frame came back.",
                            envelope.topic,
                        )
                    inbox = child.inbox
                    if len(inbox) >= self.owner.max_queued_frames:
                        await self._too_slow(child)
                        continue
                    if envelope.text is not None:
                        inbox.put({"type": "websocket.receive", "text": envelope.text})
                    else:
                        inbox.put({"type": "websocket.receive", "bytes": envelope.data})
                elif envelope.kind == CLOSE:
                    if child is None:
                        raise EnvelopeError(
                            "not_open",
                            f"Topic {envelope.topic!r} is not open.",
                            envelope.topic,
                        )
                    del topics[envelope.topic]
                    child.disconnect(envelope.code)
                else:
                    self._open(envelope, child)
            except EnvelopeError as exc:
                await self._error(exc)

    def _open(self, envelope: Envelope, child: Child | None) -> None:
        topic = envelope.topic
        if child is not None:
            raise EnvelopeError(
                "already_open", f"Topic {topic!r} is already open.", topic
            )
        limit = self.owner.max_topics
        if len(self.topics) >= limit:
            raise EnvelopeError(
                "too_many_topics",
                f"Expected at most {limit} topics open on one socket, got one "
                f"more ({topic!r}): close one first.",
                topic,
            )
        route = self.owner.routes.match(topic)
        if route is None:
            raise EnvelopeError(
                "unknown_topic", f"No route matches topic {topic!r}.", topic
            )
        self.opened += 1
        scope = dict(self.scope)
        scope["topic"] = topic
        scope["url_route"] = {"args": (), "kwargs": route.kwargs}
        scope[CORRELATION_KEY] = f"{self.connection_id}:{self.opened}"
        child = Child(topic, scope, self.send, self._forget)
        self.topics[topic] = child
        self.children.add(child)
        child.inbox.put({"type": "websocket.connect"})
        child.task = asyncio.get_running_loop().create_task(self._run(child, route.app))

    def _forget(self, child: Child) -> None:
        """Take ``child`` out of the topics (its consumer closed it)."""
        if self.topics.get(child.topic) is child:
            del self.topics[child.topic]

    async def _run(self, child: Child, app: ASGIApp) -> None:
        """Run ``child``'s consumer to its end; a failure ends its topic only."""
        try:
            await app(child.scope, child.inbox.get, child.send)
        except Exception:
            logger.exception(
                "Topic %s on WebSocket %s failed; closing it with %d.",
                printable(child.topic),
                self.path,
                CLOSE_INTERNAL_ERROR,
            )
            await self._end_quietly(child, CLOSE_INTERNAL_ERROR)
        else:
            # Returned without closing: as a server closes such a socket.
            await self._end_quietly(child, 1000)
        finally:
            self.children.discard(child)

    async def _end_quietly(self, child: Child, code: int) -> None:
        if child.state == CLOSED:
            return
        try:
            await child.end(code)
        except Exception as exc:
            logger.debug("Could not close topic %s: %r", printable(child.topic), exc)

    async def _too_slow(self, child: Child) -> None:
        logger.warning(
            "Closing topic %s on WebSocket %s with %d: more than %d frames wait "
            "for its consumer.",
            printable(child.topic),
            self.path,
            CLOSE_TOO_SLOW,
            self.owner.max_queued_frames,
        )
        await self._end_quietly(child, CLOSE_TOO_SLOW)

    async def _error(self, exc: EnvelopeError) -> None:
        # DEBUG: a hostile client must not decide how much we log.
        logger.debug(
            "Refused an envelope on %s (%s): %s", self.path, exc.code, exc.message
        )
        await self.send(
            {
                "type": "websocket.send",
                "text": error_frame(exc.topic, exc.code, exc.message),
            }
        )

    async def _end_all(self, code: int) -> None:
        """Send every consumer the socket's end; wait for them to finish."""
        self.topics.clear()
        children = [child for child in self.children if child.task is not None]
        for child in children:
            child.disconnect(code)  # nothing for one already ended
        tasks = [child.task for child in children if child.task is not None]
        if not tasks:
            return
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
