"""One multiplexed connection: its topics, their consumers, who reads the socket.

:class:`MultiplexedSocket` runs one connection of a
:class:`~django_realtime.multiplex.Multiplexer` (whose module docstring has
the behaviour the client sees). This module decides who reads the server's
``receive``, so that a frame costs as few task switches as it can:

- one task reads at a time, the **reader**; it routes what it reads (a
  frame into its topic's inbox, an ``open``, ``close`` or error here);
- a consumer whose inbox is empty, when nobody reads, becomes the reader
  itself, inside its own ``receive()``: a frame for its own topic is then
  returned to it at once, with no other task woken and no queue on the
  way. It stops reading as soon as it has something to return;
- the socket's own task reads when no consumer does. When it reads a frame
  for a consumer that waits, it wakes that consumer and leaves the reading
  to it. When a reader stops, the socket's task is woken 5 to 10
  milliseconds later unless a consumer took the reading over meanwhile
  (:mod:`django_realtime.multiplex.lending`, one timer per event loop),
  so that the socket is read while a consumer's handler waits, slow or
  sync.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
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
    PING,
    PONG_FRAME,
    Envelope,
    EnvelopeError,
    check_topic,
    error_frame,
    parse_binary,
    parse_text,
)
from django_realtime.multiplex.lending import lending
from django_realtime.ops import lifecycle
from django_realtime.ops.logs import printable
from django_realtime.servers.daphne import flow_controlled
from django_realtime.types import ASGIApp, Message

__all__ = ["MultiplexedSocket"]

logger = logging.getLogger("django_realtime.multiplex")

#: What :meth:`MultiplexedSocket._read` returns to the socket's own task
#: when it woke a consumer and leaves the reading to it.
_HANDED_OVER: Message = {"type": "multiplex.handed_over"}


class MultiplexedSocket:
    """Run one multiplexed connection: read it, route it, end it.

    Args:
        owner: The :class:`~django_realtime.multiplex.Multiplexer` (routes
            and limits).
        scope: The socket's scope.
        receive: The server's ``receive``.
        send: The server's ``send``.
    """

    def __init__(self, owner: Any, scope: Any, receive: Any, send: Any) -> None:
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
        # Who reads the server now: a Child, this socket, or None.
        self.reader: object | None = None
        # The socket's end was read, with this code.
        self.ended = False
        self.code = 1006
        self._wake_main: asyncio.Future[None] | None = None
        # Who wakes this socket's task when a reader stopped (lending.py).
        self._lending = lending(asyncio.get_running_loop())
        self.lent_at = 0
        # The reader waits in the server's receive; the child told to stop.
        self._receiving = False
        self._interrupted: Child | None = None
        # Made inside the server's task: consumers start in its context, not
        # in the context of the reader that read their open.
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        # What the drain needs of a connection it closes (its _close()).
        self._turn = Turn()
        self._close_sent = False
        self._tracked = False

    async def run(self) -> None:
        """Accept the socket, serve it until it ends, then end every topic."""
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
            await self._serve()
        finally:
            await self._end_all()
            if self._tracked:
                lifecycle.closed(self)

    async def _serve(self) -> None:
        """Read whenever no consumer does, until the socket ends."""
        loop = self._loop
        handed_over = False
        while not self.ended:
            if self.reader is None and not handed_over:
                handed_over = await self._read(self) is not None
                continue
            # A consumer reads (or was just handed the reading): wait until
            # a reader stops with nobody taking over.
            handed_over = False
            waiter = self._wake_main = loop.create_future()
            try:
                await waiter
            finally:
                self._wake_main = None

    async def receive_for(self, child: Child) -> Message:
        """Return ``child``'s next event; read the socket meanwhile if nobody does."""
        inbox = child.inbox
        items = inbox.items
        while True:
            if items:
                return items.popleft()
            if self.reader is None and not self.ended:
                # Read as this consumer. Its first event is read here: most
                # often its own frame, returned with no coroutine of _read().
                self.reader = child
                self._receiving = True
                try:
                    message = await self.receive()
                except BaseException as exc:
                    self._receiving = False
                    self._stop_reading()
                    if not (
                        isinstance(exc, asyncio.CancelledError)
                        and self._interrupted is child
                    ):
                        raise
                    # interrupt(): the servers' receive is cancel-safe.
                    self._interrupted = None
                    if (task := asyncio.current_task()) is not None:
                        task.uncancel()
                    continue
                self._receiving = False
                text = message.get("text")
                if (
                    text is not None
                    and text.startswith(child.prefix)
                    and child.state == OPEN
                    and not items
                ):
                    self._stop_reading()
                    return {
                        "type": "websocket.receive",
                        "text": text[len(child.prefix) :],
                    }
                event = await self._read(child, message)
                if event is not None:
                    return event
                continue
            waiter = inbox.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                inbox.waiter = None

    async def _read(
        self, owner: object, message: Message | None = None
    ) -> Message | None:
        """Read and route as ``owner`` until it should stop (see the module).

        ``message``, if given, was read by ``owner`` already: it is routed
        first.

        Returns:
            For a consumer, the event it read for itself (``None``: its
            inbox got events meanwhile, or the socket ended); for the
            socket's task, :data:`_HANDED_OVER` when it stopped to hand the
            reading over to the consumer it woke.
        """
        self.reader = owner
        receive = self.receive
        me = owner if isinstance(owner, Child) else None
        try:
            topics = self.topics
            limit = self.owner.max_queued_frames
            while True:
                if message is None:
                    self._receiving = True
                    try:
                        message = await receive()
                    except asyncio.CancelledError:
                        if self._interrupted is not owner:
                            raise
                        # interrupt(): the servers' receive is cancel-safe.
                        self._interrupted = None
                        task = asyncio.current_task()
                        if task is not None:
                            task.uncancel()
                        return None
                    finally:
                        self._receiving = False
                text = message.get("text")
                if (
                    me is not None
                    and text is not None
                    and text.startswith(me.prefix)
                    and me.state == OPEN
                    and not me.inbox.items
                ):
                    # The hottest path: the reader's own frame (its data
                    # frames start with "<topic>\n"), returned at once.
                    return {"type": "websocket.receive", "text": text[len(me.prefix) :]}
                # The hot path, inline: a data frame for an open topic.
                target: Child | None = None
                routed = False
                if text is not None and text[:1] != "{":
                    cut = text.find("\n")
                    child = topics.get(text[:cut]) if cut > 0 else None
                    if child is not None and child.state == OPEN:
                        items = child.inbox.items
                        if len(items) < limit:
                            event = {
                                "type": "websocket.receive",
                                "text": text[cut + 1 :],
                            }
                            if child.inbox.put(event):
                                target = child
                            routed = True
                if not routed:
                    target = await self._route(message)
                message = None
                if self.ended:
                    return None
                if owner is self:
                    if target is not None:
                        return _HANDED_OVER  # to the consumer woken
                elif me is not None and me.inbox.items:
                    return None
        finally:
            self._stop_reading()

    def _stop_reading(self) -> None:
        """The reader stops: the socket's task reads soon unless one takes over."""
        self.reader = None
        if not self.ended:
            # Lending.note(self), inline: once a frame.
            lending = self._lending
            self.lent_at = lending.ticks
            lending.noted.add(self)
            if lending.timer is None:
                lending.arm()

    def interrupt(self, child: Child) -> None:
        """Stop ``child`` reading: its inbox got an event from another task.

        A consumer closing its topic from a layer handler, or a drain, puts
        the disconnect in its inbox while its own task may be the reader,
        waiting in the server's ``receive``: that wait is cancelled (the
        servers' ``receive`` loses nothing to it) and the consumer gets its
        disconnect at once.
        """
        task = child.task
        if (
            self.reader is child
            and self._receiving
            and task is not None
            and task is not asyncio.current_task()
        ):
            self._interrupted = child
            task.cancel()

    def check_reader(self) -> None:
        """Wake the socket's task to read if no consumer took the reading over."""
        if self.reader is None and (waiter := self._wake_main) is not None:
            self._wake_main = None
            if not waiter.done():
                waiter.set_result(None)

    async def _route(self, message: Message) -> Child | None:
        """Act on one server event; return the child a frame woke, if any."""
        kind = message["type"]
        if kind != "websocket.receive":
            if kind == "websocket.disconnect":
                self._disconnected(int(message.get("code", 1005)))
            return None
        text = message.get("text")
        try:
            if text is not None:
                envelope = parse_text(text)
            else:
                envelope = parse_binary(message.get("bytes") or b"")
            child = self.topics.get(envelope.topic)
            if envelope.kind is FRAME:
                if child is None or child.state != OPEN:
                    check_topic(envelope.topic)
                    raise EnvelopeError(
                        "not_open",
                        f"Topic {envelope.topic!r} is not open: send its frames "
                        "after its 'open' frame came back.",
                        envelope.topic,
                    )
                inbox = child.inbox
                if len(inbox.items) >= self.owner.max_queued_frames:
                    await self._too_slow(child)
                    return None
                if envelope.text is not None:
                    woken = inbox.put(
                        {"type": "websocket.receive", "text": envelope.text}
                    )
                else:
                    woken = inbox.put(
                        {"type": "websocket.receive", "bytes": envelope.data}
                    )
                return child if woken else None
            if envelope.kind == CLOSE:
                if child is None:
                    raise EnvelopeError(
                        "not_open",
                        f"Topic {envelope.topic!r} is not open.",
                        envelope.topic,
                    )
                del self.topics[envelope.topic]
                child.disconnect(envelope.code)
                return None
            if envelope.kind == PING:
                await self.send({"type": "websocket.send", "text": PONG_FRAME})
                return None
            self._open(envelope, child)
        except EnvelopeError as exc:
            await self._error(exc)
        return None

    def _disconnected(self, code: int) -> None:
        """The socket ended: every consumer gets its disconnect."""
        self.ended = True
        self.code = code
        self.topics.clear()
        for child in self.children:
            child.disconnect(code)  # nothing for one already ended
        if (waiter := self._wake_main) is not None and not waiter.done():
            waiter.set_result(None)

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
        child = Child(topic, scope, self.send, self._forget, self.interrupt)
        receive = functools.partial(self.receive_for, child)
        self.topics[topic] = child
        self.children.add(child)
        child.inbox.put({"type": "websocket.connect"})
        child.task = self._loop.create_task(
            self._run(child, route.app, receive), context=self._context.copy()
        )

    def _forget(self, child: Child) -> None:
        """Take ``child`` out of the topics (its consumer closed it)."""
        if self.topics.get(child.topic) is child:
            del self.topics[child.topic]

    async def _run(self, child: Child, app: ASGIApp, receive: Any) -> None:
        """Run ``child``'s consumer to its end; a failure ends its topic only."""
        try:
            await app(child.scope, receive, child.send)
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

    async def _end_all(self) -> None:
        """Send every consumer the socket's end; wait for them to finish."""
        self._lending.forget(self)
        if not self.ended:
            self._disconnected(self.code)
        tasks = [child.task for child in self.children if child.task is not None]
        if not tasks:
            return
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
