"""The stream protocol of one connection, with no I/O and no event loop.

A :class:`StreamSession` decides everything the stream protocol
(``docs/reference/streams-protocol.rst``) leaves to the server for one
connection: which client frames are valid, their answers, and the order of
what the client gets from its streams (the
:class:`~django_realtime.streams.lane.StreamLane` it extends). A transport
(the WebSocket :class:`~django_realtime.streams.consumer.StreamConsumer`,
and any other) is a thin shell: it feeds the session what happened and
does what the session returns (:mod:`django_realtime.streams.actions`).

:meth:`StreamSession.receive` takes one decoded client frame and returns
at most one output: a :class:`~.actions.Send` (an error, a pong), an
:class:`~.actions.Authorize` (ask the application, then
:meth:`~StreamSession.authorized`) or a :class:`~.actions.Call` (run the
request handler, then :meth:`~StreamSession.replied`,
:meth:`~StreamSession.refused`, :meth:`~StreamSession.failed` or
:meth:`~StreamSession.unknown_request`). Subscribes that are allowed and
unsubscribes go to the stream lane, which answers them. Every client frame
with an ``id`` is answered once. At most
:attr:`~.limits.SessionLimits.max_pending` subscribes and unsubscribes wait
for their answer; more are refused with ``too_many_pending``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django_realtime.ops.logs import printable
from django_realtime.streams.actions import Authorize, Call, Send
from django_realtime.streams.cursor import DELIVER
from django_realtime.streams.filters import PublicationFilter
from django_realtime.streams.lane import StreamLane
from django_realtime.streams.positions import Publication
from django_realtime.streams.protocol import (
    FrameError,
    Request,
    Subscribe,
    Unsubscribe,
    error_frame,
    parse_frame,
)

__all__ = ["StreamSession", "request_handler_name"]

logger = logging.getLogger("django_realtime.streams")


def request_handler_name(request_type: str) -> str:
    """Return the name of the handler of ``request_type``.

    That is ``request_`` and the type, its dots as underscores.
    """
    return "request_" + request_type.replace(".", "_")


class StreamSession(StreamLane):
    """The stream protocol state of one connection: client frames and streams.

    Takes the arguments of :class:`~django_realtime.streams.lane.StreamLane`.

    Attributes:
        filter_for: Return the filter of an allowed subscription to a
            stream (``None``: it has none); ``None``: no subscription of
            this connection has one.
    """

    filter_for: Callable[[str], PublicationFilter | None] | None = None

    def receive(self, content: Any) -> Send | Authorize | Call | None:
        """Take one decoded client frame; return what to do about it."""
        try:
            frame = parse_frame(content)
            if type(frame) is Subscribe:
                return self._subscribe(frame)
            if type(frame) is Unsubscribe:
                self._unsubscribe(frame)
                return None
            if type(frame) is Request:
                handler = request_handler_name(frame.type)
                return Call(frame.id, frame.type, handler, frame.data)
            return self._send({"kind": "pong", "id": frame.id})
        except FrameError as exc:
            return self._refuse(exc)

    def withhold(self, publication: Publication) -> bool:
        """Withhold an announced publication at once, if its filter says so.

        Only while the connection has nothing queued or under way (so the
        count of withheld publications stays in order) and the publication
        comes next in its subscription; return whether it was withheld.
        """
        # The lane's private state: this is part of the lane's logic, kept
        # here for the size of lane.py.
        if self.events or self._ready or self._awaiting is not None or self.closing:
            return False
        subscription = self.subscriptions.get(publication.stream)
        if subscription is None or subscription.waiting or self._deferred:
            return False
        delivery, cursor = subscription.delivery, subscription.cursor
        if (
            delivery is None
            or cursor is None
            or delivery.rendering
            or cursor.verdict(publication) != DELIVER
            or not delivery.withholds(publication)
        ):
            return False
        cursor.advance(publication)
        delivery.withheld += 1
        return True

    def authorized(self, request: Authorize, allowed: bool) -> Send | None:
        """Take the application's answer to ``request``; return the refusal, if any.

        An allowed subscription waits in the stream lane's queue.
        """
        if not allowed:
            return self._refuse(
                FrameError(
                    request.id,
                    "forbidden",
                    f"Not allowed to subscribe to {request.stream!r}.",
                )
            )
        filter_for = self.filter_for
        self.start(
            request.id,
            request.stream,
            request.since,
            None if filter_for is None else filter_for(request.stream),
        )
        return None

    def replied(self, call: Call, result: Any) -> Send:
        """Return the ``reply`` to ``call``.

        Raises:
            TypeError: ``result`` cannot be encoded (``encode``'s error).
            ValueError: likewise.
        """
        return self._send({"kind": "reply", "id": call.id, "data": result})

    def refused(self, call: Call, code: str, message: str) -> Send:
        """Return the ``error`` for ``call``: its handler refused with ``code``."""
        return self._send(error_frame(call.id, code, message))

    def failed(self, call: Call, error: BaseException) -> Send:
        """Return the ``error`` for ``call``: its handler failed with ``error``.

        The failure is logged, with its traceback.
        """
        logger.error(
            "Request %s on %s failed.",
            printable(repr(call.type)),
            self.label,
            exc_info=error,
        )
        return self._send(error_frame(call.id, "request_failed", "internal error"))

    def unknown_request(self, call: Call, owner: str) -> Send:
        """Return the ``error`` for ``call``: ``owner`` has no handler for it."""
        return self._refuse(
            FrameError(
                call.id,
                "unknown_request",
                f"No handler for request {call.type!r}: define "
                f"{owner}.{call.handler}(self, data).",
            )
        )

    def _refuse(self, exc: FrameError) -> Send:
        # DEBUG: a hostile client must not decide how much we log.
        logger.debug(
            "Refused a frame on %s (%s): %s",
            self.label,
            exc.code,
            printable(exc.message),
        )
        return self._send(exc.frame())

    def _check_pending(self, frame_id: int) -> None:
        limit = self.limits.max_pending
        if self.pending >= limit:
            raise FrameError(
                frame_id,
                "too_many_pending",
                f"Expected at most {limit} subscribes and unsubscribes waiting "
                "for their answer, got one more: read the answers first.",
            )

    def _subscribe(self, frame: Subscribe) -> Authorize:
        stream = frame.stream
        if stream in self.subscriptions:
            raise FrameError(
                frame.id, "already_subscribed", f"Already subscribed to {stream!r}."
            )
        limit = self.limits.max_subscriptions
        if len(self.subscriptions) >= limit:
            raise FrameError(
                frame.id,
                "too_many_subscriptions",
                f"At most {limit} subscriptions per connection.",
            )
        self._check_pending(frame.id)
        return Authorize(frame.id, stream, frame.since)

    def _unsubscribe(self, frame: Unsubscribe) -> None:
        if frame.stream not in self.subscriptions:
            raise FrameError(
                frame.id, "not_subscribed", f"Not subscribed to {frame.stream!r}."
            )
        self._check_pending(frame.id)
        self.stop(frame.id, frame.stream)
