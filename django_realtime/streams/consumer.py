"""The consumer that serves streams to clients over the stream protocol.

:class:`StreamConsumer` speaks the protocol of
``docs/topics/streams-protocol.rst``: clients subscribe to streams (resuming
from a position), send requests and get replies. The application decides
who may read which stream (:meth:`StreamConsumer.authorize_stream`, asked
on every subscribe, resumes included) and answers requests with
``request_<type>`` methods.

Publications reach a connection through its :class:`_Pump`, a task started
at its first subscription. The store announces publications to the pump
(in-process, without awaiting); the pump alone writes stream frames to the
socket, in the order of its queue, and reads the history when a
subscription starts, when a gap shows in the offsets, and when the store
says announcements may have been lost. Announcements that arrive while it
reads wait in the queue and are then sorted by the subscription's
:class:`~django_realtime.streams.cursor.Cursor`: so a subscriber gets each
publication once, in order, with no gap between replay and live.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django_realtime.consumers.websocket import (
    CLOSE_TOO_SLOW,
    AsyncJsonWebsocketConsumer,
)
from django_realtime.delivery.outbox import current_outbox
from django_realtime.exceptions import RequestError
from django_realtime.ops import metrics
from django_realtime.streams.cursor import DELIVER, GAP, CatchUp, Cursor
from django_realtime.streams.positions import Position, Publication
from django_realtime.streams.protocol import (
    FrameError,
    Request,
    Subscribe,
    Unsubscribe,
    error_frame,
    lost_frame,
    parse_frame,
    subscribed_frame,
)
from django_realtime.streams.registry import get_stream_store

if TYPE_CHECKING:
    from django_realtime.streams.positions import History
    from django_realtime.streams.stores.base import HistoryStore

_T = TypeVar("_T")

__all__ = [
    "CLOSE_STREAMING_FAILED",
    "CLOSE_TOO_SLOW",
    "StreamConsumer",
    "StreamStats",
    "stats",
]

logger = logging.getLogger("django_realtime.streams")

#: The close code when the history store keeps failing: the client reconnects
#: and resumes. (1011 says the same, but daphne cannot send it.)
CLOSE_STREAMING_FAILED = 4011

# CLOSE_TOO_SLOW (4008), imported above, closes a client that does not keep
# up with its streams (the "close" slow-client policy): it reconnects and
# resumes from history.


@dataclass
class StreamStats:
    """Counters of this process's stream connections (for metrics).

    Attributes:
        slow_catch_ups: Times a connection's queue overflowed and its queued
            publications were dropped, to be sent again from history.
        slow_closes: Connections closed with :data:`CLOSE_TOO_SLOW`.
        dropped_publications: Queued publications dropped by either.
    """

    slow_catch_ups: int = 0
    slow_closes: int = 0
    dropped_publications: int = 0


#: The process's counters.
stats = StreamStats()


def _metrics_source() -> list[tuple[str, str, int]]:
    return [
        ("slow_clients", "catch_up", stats.slow_catch_ups),
        ("slow_clients", "closed", stats.slow_closes),
    ]


metrics.add_source(_metrics_source)

# Seconds between the tries of a store call: reads and listens change
# nothing, so a Redis blip costs a retry, not the connection.
_RETRY_DELAYS = (0.05, 0.25, 1.0)


class _StoreFailed(Exception):
    """The history store failed on every try."""


async def _with_retries(call: Callable[[], Awaitable[_T]]) -> _T:
    """Return ``await call()``, trying again after a failure, a few times."""
    for delay in _RETRY_DELAYS:
        try:
            return await call()
        except Exception as exc:
            logger.info(
                "A history store call failed (%r); retrying in %s s.", exc, delay
            )
            await asyncio.sleep(delay)
    try:
        return await call()
    except Exception as exc:
        raise _StoreFailed(repr(exc)) from exc


class _Subscription:
    """One stream a connection subscribed to; ``cursor`` once it started."""

    __slots__ = ("cursor", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.cursor: Cursor | None = None


class _Start:
    __slots__ = ("frame_id", "since", "subscription")

    def __init__(
        self, frame_id: int, subscription: _Subscription, since: Position | None
    ) -> None:
        self.frame_id = frame_id
        self.subscription = subscription
        self.since = since


class _Stop:
    __slots__ = ("frame_id", "stream")

    def __init__(self, frame_id: int, stream: str) -> None:
        self.frame_id = frame_id
        self.stream = stream


class _Resync:
    __slots__ = ("stream",)

    def __init__(self, stream: str) -> None:
        self.stream = stream


class _Pump:
    """Write one connection's stream frames, in order (a store listener)."""

    def __init__(self, consumer: StreamConsumer, store: HistoryStore) -> None:
        self.consumer = consumer
        self.store = store
        self.events: deque[Publication | _Start | _Stop | _Resync] = deque()
        self.listening: set[str] = set()
        # Publications queued, and their payload characters: bounded by the
        # consumer's max_queued and max_queued_bytes.
        self.queued = 0
        self.queued_bytes = 0
        self.closing = False
        self._closing: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    # The store's Listener protocol: queue, never await.
    def publication(self, publication: Publication) -> None:
        """Queue an announced publication, within the consumer's limits."""
        if self.closing:
            return
        self.queued += 1
        self.queued_bytes += len(publication.data)
        consumer = self.consumer
        self.push(publication)
        if (
            self.queued > consumer.max_queued
            or self.queued_bytes > consumer.max_queued_bytes
        ):
            self._overflow()

    def _overflow(self) -> None:
        """Drop the queued publications, by the consumer's slow-client policy."""
        consumer = self.consumer
        count, size = self.queued, self.queued_bytes
        dropped = {e.stream for e in self.events if type(e) is Publication}
        # Control events stay, but one catch-up per stream is enough.
        kept: deque[Publication | _Start | _Stop | _Resync] = deque(
            event
            for event in self.events
            if type(event) is not Publication
            and not (type(event) is _Resync and event.stream in dropped)
        )
        self.queued = self.queued_bytes = 0
        stats.dropped_publications += count
        path = consumer.scope.get("path", "?")
        if consumer.slow_client_policy == "close":
            stats.slow_closes += 1
            self.closing = True
            self.events.clear()
            logger.warning(
                "Closing %s with %d: it does not keep up (%d publications, %d "
                "characters queued). It resumes from history when it reconnects.",
                path,
                CLOSE_TOO_SLOW,
                count,
                size,
            )
            # The pump may be stuck in a send to this client: stop it.
            self.task.cancel()
            # Kept: the loop holds only a weak reference to a task.
            self._closing = asyncio.get_running_loop().create_task(
                self._close(CLOSE_TOO_SLOW)
            )
            return
        stats.slow_catch_ups += 1
        logger.warning(
            "%s does not keep up (%d publications, %d characters queued): "
            "dropped them, to send again from history once it reads.",
            path,
            count,
            size,
        )
        kept.extend(_Resync(stream) for stream in sorted(dropped))
        self.events = kept

    def resync(self, stream: str) -> None:
        """Queue a catch-up of ``stream``: announcements may have been lost."""
        self.push(_Resync(stream))

    def push(self, event: Publication | _Start | _Stop | _Resync) -> None:
        """Queue ``event`` and wake the pump."""
        self.events.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    async def stop(self) -> None:
        """Stop writing and stop listening to every stream."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for stream in list(self.listening):
            try:
                await self.store.unlisten(stream, self)
            except Exception:
                logger.debug("Could not unlisten %s.", stream, exc_info=True)
        self.listening.clear()

    async def _run(self) -> None:
        send = self.consumer.base_send
        subscriptions = self.consumer.stream_subscriptions
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Not bound once: an overflow replaces the queue.
                if not self.events:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                event = self.events.popleft()
                if type(event) is Publication:
                    self.queued -= 1
                    self.queued_bytes -= len(event.data)
                    subscription = subscriptions.get(event.stream)
                    cursor = subscription.cursor if subscription else None
                    if cursor is None:
                        continue  # unsubscribed, or its start will read it
                    verdict = cursor.verdict(event)
                    if verdict == DELIVER:
                        cursor.offset = event.offset
                        await send({"type": "websocket.send", "text": event.frame})
                    elif verdict == GAP:
                        logger.info(
                            "Gap in %s before offset %d (had %d): reading history.",
                            event.stream,
                            event.offset,
                            cursor.offset,
                        )
                        await self._catch_up(event.stream, cursor, event)
                elif isinstance(event, _Start):
                    await self._start(event)
                elif isinstance(event, _Stop):
                    await self._stop(event)
                else:
                    subscription = subscriptions.get(event.stream)
                    if subscription is not None and subscription.cursor is not None:
                        await self._catch_up(event.stream, subscription.cursor, None)
        except _StoreFailed as exc:
            logger.warning(
                "Stopped streaming to %s: the history store failed (%s). "
                "Closing with %d; the client resumes when it reconnects.",
                self.consumer.scope.get("path", "?"),
                exc,
                CLOSE_STREAMING_FAILED,
            )
            await self._close()
        except Exception as exc:
            # A send failed: the client has gone, and the server is telling
            # the consumer. Anything else is a bug: close, the client resumes.
            logger.info(
                "Stopped streaming to %s (%s: %s).",
                self.consumer.scope.get("path", "?"),
                type(exc).__name__,
                exc,
            )
            logger.debug("Traceback of the stop:", exc_info=True)
            await self._close()

    async def _close(self, code: int = CLOSE_STREAMING_FAILED) -> None:
        try:
            await self.consumer.close(code)
        except Exception:
            logger.debug("Could not close the connection.", exc_info=True)

    async def _read(self, stream: str, since: Position | None) -> History:
        return await _with_retries(lambda: self.store.read(stream, since))

    async def _start(self, start: _Start) -> None:
        subscription = start.subscription
        stream = subscription.stream
        if self.consumer.stream_subscriptions.get(stream) is not subscription:
            # Unsubscribed before it started: every frame gets its answer.
            frame = error_frame(
                start.frame_id,
                "cancelled",
                f"Unsubscribed from {stream!r} before the subscription started.",
            )
            await self.consumer.base_send(
                {"type": "websocket.send", "text": self.consumer.encode_json(frame)}
            )
            return
        if stream not in self.listening:
            # Listen before reading, so nothing published in between is
            # missed; what the read also returns is dropped as a duplicate.
            await _with_retries(lambda: self.store.listen(stream, self))
            self.listening.add(stream)
        history = await self._read(stream, start.since)
        cursor, begin = Cursor.start(history, start.since)
        frame = subscribed_frame(
            start.frame_id,
            stream,
            begin.position,
            begin.recovered,
            begin.reason,
            len(begin.replay),
        )
        if start.since is not None and not begin.recovered:
            logger.info(
                "Could not resume %s from %s:%d (%s).",
                stream,
                start.since.epoch,
                start.since.offset,
                begin.reason,
            )
        send = self.consumer.base_send
        await send({"type": "websocket.send", "text": self.consumer.encode_json(frame)})
        for publication in begin.replay:
            await send({"type": "websocket.send", "text": publication.frame})
        subscription.cursor = cursor

    async def _stop(self, stop: _Stop) -> None:
        if (
            stop.stream in self.listening
            and stop.stream not in self.consumer.stream_subscriptions
        ):
            self.listening.discard(stop.stream)
            await self.store.unlisten(stop.stream, self)
        frame = {"kind": "unsubscribed", "id": stop.frame_id, "stream": stop.stream}
        await self.consumer.base_send(
            {"type": "websocket.send", "text": self.consumer.encode_json(frame)}
        )

    async def _catch_up(
        self, stream: str, cursor: Cursor, announced: Publication | None
    ) -> None:
        result = cursor.catch_up(await self._read(stream, cursor.position))
        await self._send_catch_up(stream, result)
        if announced is not None:
            await self._send_catch_up(stream, cursor.settle(announced))

    async def _send_catch_up(self, stream: str, result: CatchUp) -> None:
        send = self.consumer.base_send
        if result.lost is not None and result.position is not None:
            logger.warning(
                "Lost history of %s up to %s:%d (%s): the client was told.",
                stream,
                result.position.epoch,
                result.position.offset,
                result.lost,
            )
            # The lost frame names the position before what follows it.
            position = result.position
            if result.publications:
                first = result.publications[0]
                position = Position(first.epoch, first.offset - 1)
            frame = lost_frame(stream, position, result.lost)
            await send(
                {"type": "websocket.send", "text": self.consumer.encode_json(frame)}
            )
        for publication in result.publications:
            await send({"type": "websocket.send", "text": publication.frame})


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """Serve streams and requests over the stream protocol.

    Override :meth:`authorize_stream` to allow subscriptions (every stream
    is refused by default) and add ``request_<type>`` methods (dots in the
    type become underscores) to answer requests. Both may be coroutine
    functions or plain functions (run on the sync pool).

    Attributes:
        max_subscriptions: Most streams one connection may subscribe to.
        max_queued: Most publications waiting to be written to one
            connection (a client that does not read, on a slow network).
        max_queued_bytes: Most payload characters waiting likewise.
        slow_client_policy: What happens to a connection over either limit:
            ``"catch_up"`` drops what is queued and sends it again from
            history once the client reads again (a ``lost`` frame if it has
            left the window meanwhile); ``"close"`` closes the connection
            with :data:`CLOSE_TOO_SLOW`, and the client resumes when it
            reconnects. Either way memory stays bounded, a warning is
            logged, and :data:`stats` counts it.
    """

    max_subscriptions: ClassVar[int] = 100
    max_queued: ClassVar[int] = 1000
    max_queued_bytes: ClassVar[int] = 4 * 1024 * 1024
    slow_client_policy: ClassVar[str] = "catch_up"
    _requests: ClassVar[dict[str, tuple[str, bool] | None]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._requests = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream_subscriptions: dict[str, _Subscription] = {}
        self._pump: _Pump | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the consumer; stop its streams when it ends."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._pump is not None:
                await self._pump.stop()

    async def authorize_stream(self, stream: str) -> bool:
        """Return whether this connection may read ``stream``; override.

        Asked on every subscribe, including a client's resume after a
        reconnect, so a revoked permission takes effect then. The default
        refuses every stream.
        """
        return False

    async def receive_json(self, content: Any) -> None:
        """Handle one protocol frame from the client."""
        try:
            frame = parse_frame(content)
            if type(frame) is Subscribe:
                await self._subscribe(frame)
            elif type(frame) is Unsubscribe:
                self._unsubscribe(frame)
            elif type(frame) is Request:
                await self._request(frame)
            else:
                await self.send_json({"kind": "pong", "id": frame.id})
        except FrameError as exc:
            # DEBUG: a hostile client must not decide how much we log.
            logger.debug(
                "Refused a frame on %s (%s): %s",
                self.scope.get("path", "?"),
                exc.code,
                exc.message,
            )
            await self.send_json(exc.frame())

    async def _subscribe(self, frame: Subscribe) -> None:
        stream = frame.stream
        if stream in self.stream_subscriptions:
            raise FrameError(
                frame.id, "already_subscribed", f"Already subscribed to {stream!r}."
            )
        if len(self.stream_subscriptions) >= self.max_subscriptions:
            raise FrameError(
                frame.id,
                "too_many_subscriptions",
                f"At most {self.max_subscriptions} subscriptions per connection.",
            )
        if not await self._call_hook("authorize_stream", stream):
            raise FrameError(
                frame.id, "forbidden", f"Not allowed to subscribe to {stream!r}."
            )
        subscription = self.stream_subscriptions[stream] = _Subscription(stream)
        if self._pump is None:
            self._pump = _Pump(self, get_stream_store())
        self._pump.push(_Start(frame.id, subscription, frame.since))

    def _unsubscribe(self, frame: Unsubscribe) -> None:
        if (
            self.stream_subscriptions.pop(frame.stream, None) is None
            or self._pump is None
        ):
            raise FrameError(
                frame.id, "not_subscribed", f"Not subscribed to {frame.stream!r}."
            )
        self._pump.push(_Stop(frame.id, frame.stream))

    @staticmethod
    def _request_name(request_type: str) -> str:
        return "request_" + request_type.replace(".", "_")

    @classmethod
    def _request_handler(cls, request_type: str) -> tuple[str, bool] | None:
        try:
            return cls._requests[request_type]
        except KeyError:
            pass
        name = cls._request_name(request_type)
        handler = getattr(cls, name, None)
        entry = (
            (name, inspect.iscoroutinefunction(handler)) if callable(handler) else None
        )
        if len(cls._requests) < 1000:
            cls._requests[request_type] = entry
        return entry

    async def _request(self, frame: Request) -> None:
        entry = self._request_handler(frame.type)
        if entry is None:
            raise FrameError(
                frame.id,
                "unknown_request",
                f"No handler for request {frame.type!r}: define "
                f"{type(self).__name__}.{self._request_name(frame.type)}(self, data).",
            )
        name, is_async = entry
        outbox = current_outbox(self)
        held = len(outbox.messages) if outbox is not None else 0
        try:
            result = await self._invoke(getattr(self, name), is_async, frame.data)
            reply = self.encode_json({"kind": "reply", "id": frame.id, "data": result})
        except RequestError as exc:
            self._drop_held_since(held)
            raise FrameError(frame.id, exc.code, exc.message) from None
        except Exception:
            self._drop_held_since(held)
            logger.exception(
                "Request %r on %s failed.", frame.type, self.scope.get("path", "?")
            )
            raise FrameError(frame.id, "request_failed", "internal error") from None
        await self.send(text_data=reply)

    def _drop_held_since(self, held: int) -> None:
        """Drop what a failed request handler sent or published."""
        outbox = current_outbox(self)
        if outbox is not None:
            del outbox.messages[held:]
