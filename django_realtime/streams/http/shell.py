"""Run a consumer's stream session for one HTTP request.

The HTTP transports serve the application's own
:class:`~django_realtime.streams.consumer.StreamConsumer`: for each request
a consumer is made with the request's scope (user and session included),
and its :class:`~django_realtime.streams.session.StreamSession` and
:class:`~django_realtime.streams.pump.SessionPump` do the protocol, as over
a WebSocket. Nothing outlives the request:

- :func:`answer` handles one client frame of a ``POST`` and returns its
  answer (a subscribe's answer comes with the replay it asked for);
- :class:`Resume` subscribes again to the client's streams from its
  positions (every one authorized again) and hands over what they send:
  the replay, then live publications, until the request ends.

Each request runs the consumer's ``connect()`` first (:func:`admit`), with
the request's scope (``url_route`` included): a consumer that refuses or
closes refuses the request. ``disconnect()`` is not called: the request
held no connection. A consumer that wants to know the client behind its
requests implements :class:`ClientFollower` (presence does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from django_realtime.delivery.outbox import Outbox, activate, deactivate
from django_realtime.delivery.sends import RETURNED, held_layer, settle
from django_realtime.exceptions import DenyConnection
from django_realtime.layers import get_channel_layer
from django_realtime.ops import lifecycle
from django_realtime.streams.actions import Authorize, Call, Send
from django_realtime.streams.consumer import StreamConsumer
from django_realtime.streams.http.tokens import Client
from django_realtime.streams.http.wire import HttpRefusal, resume_frame, resumed
from django_realtime.streams.positions import Position
from django_realtime.streams.protocol import (
    FrameError,
    Subscribe,
    Unsubscribe,
    error_frame,
    parse_frame,
)
from django_realtime.streams.pump import SessionPump
from django_realtime.streams.registry import get_stream_store

__all__ = [
    "ClientFollower",
    "Collector",
    "Resume",
    "admit",
    "answer",
    "make_consumer",
]

logger = logging.getLogger("django_realtime.streams")

_PUBLICATION = '{"kind":"publication"'
# Most seconds a subscribe's POST waits for its answer (the store retries
# for less).
_ANSWER_WITHIN = 30.0


class _Handshake:
    """The consumer's ``base_send`` over HTTP: what ``connect()`` said."""

    def __init__(self) -> None:
        self.accepted = False
        self.close_code: int | None = None
        #: Called with the code of a close after the handshake (a drain's).
        self.on_close: Callable[[int], None] | None = None

    async def __call__(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "websocket.accept":
            self.accepted = True
        elif kind == "websocket.close":
            self.close_code = message.get("code") or 1000
            if self.on_close is not None:
                self.on_close(self.close_code)
        else:
            logger.warning(
                "A stream consumer served over HTTP sent %r: there is no "
                "connection to send it on, so it was dropped (publish to a "
                "stream instead).",
                kind,
            )


@runtime_checkable
class ClientFollower(Protocol):
    """A consumer that follows the HTTP client its requests serve.

    The HTTP transports call these methods on a consumer that has them all.
    A *listening* request is an event stream or a long-poll: the client
    listens while one is open, on any process, and it never outlives the
    request (:class:`~django_realtime.presence.PresenceConsumer` makes the
    client a member meanwhile).
    """

    def http_client(self, client_id: str, streams: tuple[str, ...]) -> None:
        """Note the client of this request, before ``connect()``.

        ``client_id`` is the same in all the client's requests, on every
        process; ``streams`` are those it has subscribed to.
        """

    async def http_listening(self) -> None:
        """Note that this listening request begins (its streams authorized)."""

    def http_listened(self) -> None:
        """Note that this listening request has ended."""


def make_consumer(
    consumer_class: type[StreamConsumer],
    scope: dict[str, Any],
    client: Client | None = None,
) -> StreamConsumer:
    """Return a consumer of ``consumer_class`` for one HTTP request's ``scope``.

    ``client``: the client the request serves, told to a
    :class:`ClientFollower`.
    """
    consumer = consumer_class()
    consumer.scope = scope
    if client is not None and isinstance(consumer, ClientFollower):
        consumer.http_client(client.id, client.streams)
    consumer.base_send = _Handshake()
    alias = consumer_class.channel_layer_alias
    if alias is not None:
        layer = get_channel_layer(alias)
        if layer is not None:
            consumer.channel_layer = held_layer(layer)
    return consumer


def _handshake(consumer: StreamConsumer) -> _Handshake:
    handshake = consumer.base_send
    if not isinstance(handshake, _Handshake):  # pragma: no cover
        raise TypeError("Expected a consumer made by make_consumer().")
    return handshake


async def admit(consumer: StreamConsumer) -> None:
    """Run the consumer's ``connect()``, as for a WebSocket handshake.

    A gate of :mod:`django_realtime.ops.lifecycle` (the drain's) may refuse
    first, as it refuses a handshake.

    Raises:
        HttpRefusal: ``unavailable`` (503, close code 1012): a gate
            refused; ``refused`` (403): ``connect()`` raised
            ``DenyConnection``, closed the connection, or did not accept
            it. The body's ``close_code`` is the code it closed with (4003:
            do not come back), or 1006 for a refused handshake.
    """
    handshake = _handshake(consumer)
    if (reason := lifecycle.refusal(consumer.scope)) is not None:
        # The drain's gate, say: the client goes to another process.
        raise HttpRefusal(
            503,
            "unavailable",
            f"This server process does not take new clients ({reason}): try again.",
            close_code=1012,
        )
    try:
        await consumer._call_hook("connect")
    except DenyConnection:
        handshake.accepted = False
    code = handshake.close_code
    if handshake.accepted and code is None:
        return
    if code is None or not handshake.accepted:
        code = 1006  # a refused handshake, as a browser sees it
    raise HttpRefusal(
        403,
        "refused",
        f"The consumer refused the connection (close code {code}).",
        close_code=code,
    )


class Collector:
    """Take the frames a session pump writes, for a request to hand on."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        #: The close code, once the session closed.
        self.closed: int | None = None
        self._ready = asyncio.Event()

    async def send(self, text: str) -> None:
        """Keep one frame (the pump's ``send``)."""
        self.frames.append(text)
        self._ready.set()

    async def close(self, code: int) -> None:
        """Take notice that the session closed (the pump's ``close``)."""
        self.closed_with(code)

    def closed_with(self, code: int) -> None:
        """Take notice that the session or the server closed with ``code``."""
        if self.closed is None:
            self.closed = code
        self._ready.set()

    async def wait(self, seconds: float) -> None:
        """Wait until a frame or the close is there, at most ``seconds``."""
        if self.frames or self.closed is not None:
            return
        self._ready.clear()
        # A timeout scope, not wait_for: no task per wait (one per frame).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._ready.wait()

    def take(self) -> list[str]:
        """Return the frames kept so far, and forget them."""
        frames, self.frames = self.frames, []
        self._ready.clear()
        return frames


async def _authorize(consumer: StreamConsumer, output: Authorize) -> Send | None:
    allowed = await consumer._call_hook("authorize_stream", output.stream)
    return consumer.stream_session.authorized(output, bool(allowed))


class Resume:
    """The client's streams, resumed from its positions for one request.

    Build with :meth:`start`; read with :meth:`frames`; always
    :meth:`stop`.
    """

    def __init__(
        self,
        consumer: StreamConsumer,
        client: Client,
        resumes: dict[int, tuple[str, Position | None]],
        refused: list[str],
    ) -> None:
        self.consumer = consumer
        #: The client, without the streams it may no longer read.
        self.client = client
        self.collector = Collector()
        self._resumes = resumes
        self._refused = refused
        self._pump: SessionPump | None = None
        self._opened = False
        self._follower: ClientFollower | None = None
        #: Whether the client asked from a position its streams had passed:
        #: a replay came with a resume's answer (the streams are busy).
        self.behind = False

    @classmethod
    async def start(
        cls,
        consumer: StreamConsumer,
        client: Client,
        positions: dict[str, Position | None],
    ) -> Resume:
        """Subscribe ``consumer``'s session to ``positions``' streams from there.

        Every stream is authorized again; those refused are told and
        dropped from :attr:`client`.

        Raises:
            HttpRefusal: ``bad_positions`` (400): a position is not valid.
        """
        session = consumer.stream_session
        frames = [
            resume_frame(number, stream, since)
            for number, (stream, since) in enumerate(positions.items(), 1)
        ]
        resumes: dict[int, tuple[str, Position | None]] = {}
        refused: list[str] = []
        for frame in frames:
            stream = frame["stream"]
            output = session.receive(frame)
            if isinstance(output, Authorize):
                output = await _authorize(consumer, output)
            if not isinstance(output, Send):
                resumes[frame["id"]] = (stream, positions[stream])
                continue
            refused.extend(
                json.dumps(dict(json.loads(text), id=None, stream=stream))
                for text in output.frames
            )
            client = client.removing(stream)
        return cls(consumer, client, resumes, refused)

    async def begin(self) -> None:
        """Start reading the streams (on the running loop).

        Until :meth:`stop`, the request counts as an open connection in
        :mod:`django_realtime.ops.lifecycle`: a drain closes it (the
        collector's ``closed`` gets the code); and a
        :class:`ClientFollower` consumer is told that its client listens.
        """
        if isinstance(self.consumer, ClientFollower):
            self._follower = self.consumer
            await self._follower.http_listening()
        _handshake(self.consumer).on_close = self.collector.closed_with
        lifecycle.opened(self.consumer)
        self._opened = True
        self.collector.frames.extend(self._refused)
        if self._resumes:
            collector = self.collector
            self._pump = SessionPump(
                self.consumer.stream_session,
                get_stream_store(),
                collector.send,
                collector.close,
            )
            self._pump.wake()

    def frames(self) -> list[str]:
        """Return the frames for the client that came since the last call."""
        told: list[str] = []
        answered = False
        for text in self.collector.take():
            if text.startswith(_PUBLICATION):
                # A replay comes in the same take as its resume's answer.
                self.behind = self.behind or answered
                told.append(text)
                continue
            frame = json.loads(text)
            resume = self._resumes.get(frame.get("id")) if "id" in frame else None
            if resume is None:
                told.append(text)
                continue
            stream, since = resume
            answered = True
            if frame.get("kind") == "error":
                # Refused after all (an unsubscribe cannot come here).
                frame = dict(frame, id=None, stream=stream)
                self.client = self.client.removing(stream)
            said = resumed(frame, since)
            if said is not None:
                told.append(json.dumps(said))
        return told

    async def stop(self) -> None:
        """Stop reading the streams and listening to the store."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.http_listened()
        if self._pump is not None:
            await self._pump.stop()
        if self._opened:
            self._opened = False
            lifecycle.closed(self.consumer)


async def answer(
    consumer: StreamConsumer, client: Client, content: Any
) -> tuple[list[str], Client]:
    """Return the answer to one client frame, and the client after it.

    Raises:
        HttpRefusal: ``not_subscribed`` (409): an ``unsubscribe`` of a
            stream the client did not subscribe to; ``store_failed`` (503):
            the history store failed on every try.
    """
    session = consumer.stream_session
    try:
        frame = parse_frame(content)
    except FrameError as exc:
        return [session.encode(exc.frame())], client
    if type(frame) is Unsubscribe:
        if frame.stream not in client.streams:
            raise HttpRefusal(
                409,
                "not_subscribed",
                f"Not subscribed to {frame.stream!r}: nothing to unsubscribe.",
            )
        unsubscribed = {"kind": "unsubscribed", "id": frame.id, "stream": frame.stream}
        return [session.encode(unsubscribed)], client.removing(frame.stream)
    if type(frame) is Subscribe:
        return await _subscribe(consumer, client, frame, content)
    output = session.receive(content)
    if isinstance(output, Call):
        output = await _request(consumer, output)
    if not isinstance(output, Send):  # pragma: no cover (requests, pings)
        return [], client
    return list(output.frames), client


async def _subscribe(
    consumer: StreamConsumer,
    client: Client,
    frame: Subscribe,
    content: Any,
) -> tuple[list[str], Client]:
    session = consumer.stream_session
    # The session knows only this request's streams; the client's are in
    # its token.
    if frame.stream in client.streams:
        error = error_frame(
            frame.id, "already_subscribed", f"Already subscribed to {frame.stream!r}."
        )
        return [session.encode(error)], client
    limit = session.limits.max_subscriptions
    if len(client.streams) >= limit:
        error = error_frame(
            frame.id,
            "too_many_subscriptions",
            f"At most {limit} subscriptions per connection.",
        )
        return [session.encode(error)], client
    output = session.receive(content)
    if isinstance(output, Authorize):
        output = await _authorize(consumer, output)
    if isinstance(output, Send):
        return list(output.frames), client
    collector = Collector()
    pump = SessionPump(session, get_stream_store(), collector.send, collector.close)
    pump.wake()
    frames: list[str] = []
    answered = False
    try:
        async with asyncio.timeout(_ANSWER_WITHIN):
            while not answered and collector.closed is None:
                await collector.wait(_ANSWER_WITHIN)
                new = collector.take()
                frames += new
                answered = any(_answers(text, frame.id) for text in new)
    except TimeoutError:
        pass
    finally:
        await pump.stop()
    if not answered:
        raise HttpRefusal(
            503,
            "store_failed",
            "The server could not read the stream's history: try again.",
        )
    return frames, client.adding(frame.stream)


def _answers(text: str, frame_id: int) -> bool:
    """Return whether the frame ``text`` answers the client frame ``frame_id``."""
    if text.startswith(_PUBLICATION):
        return False
    return bool(json.loads(text).get("id") == frame_id)


async def _request(consumer: StreamConsumer, call: Call) -> Send:
    # Held sends as in any handler: what a failed request published is
    # dropped (by _request), the rest goes out when it returns.
    outbox = Outbox(consumer)
    token = activate(outbox)
    try:
        reply = await consumer._request(consumer.stream_session, call)
    finally:
        deactivate(token)
        for send, args in settle(outbox, RETURNED):
            await send(*args)
    return reply
