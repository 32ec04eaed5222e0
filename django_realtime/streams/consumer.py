"""The consumer that serves streams to clients over a WebSocket.

:class:`StreamConsumer` speaks the protocol of
``docs/reference/streams-protocol.rst``: clients subscribe to streams (resuming
from a position), send requests and get replies. The application decides
who may read which stream (:meth:`StreamConsumer.authorize_stream`, asked
on every subscribe, resumes included) and answers requests with
``request_<type>`` methods.

The protocol itself is the connection's
:class:`~django_realtime.streams.session.StreamSession`; this consumer is
its WebSocket shell. Client frames go to the session in the consumer's
receive loop (so request handlers run as every handler does: held sends,
database connections); the stream frames are written by a
:class:`~django_realtime.streams.pump.SessionPump`, a task started at the
first subscription.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, ClassVar

from django_realtime.conf import get_setting
from django_realtime.consumers.websocket import AsyncJsonWebsocketConsumer
from django_realtime.delivery.outbox import current_outbox
from django_realtime.delivery.sends import FAILED, settle
from django_realtime.exceptions import RequestError
from django_realtime.sessions import send_session_frames
from django_realtime.streams.actions import Authorize, Call, Send
from django_realtime.streams.filters import PublicationFilter
from django_realtime.streams.limits import SessionLimits, StreamStats, stats
from django_realtime.streams.protocol import CLOSE_STREAMING_FAILED, CLOSE_TOO_SLOW
from django_realtime.streams.pump import SessionPump
from django_realtime.streams.registry import get_stream_store
from django_realtime.streams.session import StreamSession

__all__ = [
    "CLOSE_STREAMING_FAILED",
    "CLOSE_TOO_SLOW",
    "StreamConsumer",
    "StreamStats",
    "stats",
]


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """Serve streams and requests over the stream protocol.

    Override :meth:`authorize_stream` to allow subscriptions (every stream
    is refused by default) and add ``request_<type>`` methods (dots in the
    type become underscores) to answer requests. Both may be coroutine
    functions or plain functions (run on the sync pool).

    Attributes:
        max_subscriptions: Most streams one connection may subscribe to.
            Twice as many subscribes and unsubscribes (at least 10) may
            wait for their answer; more are refused (``too_many_pending``).
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
        replay_rate: Bytes of history a second one connection may replay
            on average, by resuming and catching up (``None``: the
            ``REALTIME["STREAM_REPLAY"]["RATE"]`` setting).
        replay_burst: Bytes it may replay at once (``None``: the
            ``REALTIME["STREAM_REPLAY"]["BURST"]`` setting). Past the
            budget, its history reads wait while its other streams go on.
    """

    max_subscriptions: ClassVar[int] = 100
    max_queued: ClassVar[int] = 1000
    max_queued_bytes: ClassVar[int] = 4 * 1024 * 1024
    slow_client_policy: ClassVar[str] = "catch_up"
    replay_rate: ClassVar[float | None] = None
    replay_burst: ClassVar[float | None] = None
    # Handler name -> whether it is a coroutine function; only handlers
    # that exist, so clients cannot grow it.
    _requests: ClassVar[dict[str, bool]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._requests = {}
        # A wrong limit fails where the class is defined, not at each frame.
        cls._limits(rate=None, burst=1)

    @classmethod
    def _limits(cls, rate: float | None, burst: float) -> SessionLimits:
        """Return the class's limits; ``rate`` and ``burst`` unless it sets them."""
        return SessionLimits(
            max_subscriptions=cls.max_subscriptions,
            max_queued=cls.max_queued,
            max_queued_bytes=cls.max_queued_bytes,
            slow_client_policy=cls.slow_client_policy,
            replay_rate=rate if cls.replay_rate is None else cls.replay_rate,
            replay_burst=burst if cls.replay_burst is None else cls.replay_burst,
        )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session: StreamSession | None = None
        self._pump: SessionPump | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the consumer; stop its streams when it ends."""
        # realtime.js takes the cookie of a session that login() rotated.
        send_session_frames(scope)
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._pump is not None:
                await self._pump.stop()

    @property
    def stream_session(self) -> StreamSession:
        """Return this connection's protocol state (made at first use)."""
        if self._session is None:
            replay = get_setting("STREAM_REPLAY")
            self._session = StreamSession(
                self._limits(replay["RATE"], replay["BURST"]),
                now=time.monotonic(),
                label=self.scope.get("path", "?"),
                encode=self.encode_json,
            )
            if type(self).stream_filter is not StreamConsumer.stream_filter:
                self._session.filter_for = self.stream_filter
        return self._session

    @property
    def stream_subscriptions(self) -> dict[str, Any]:
        """Return the streams this connection subscribed to, by name."""
        return self.stream_session.subscriptions

    async def authorize_stream(self, stream: str) -> bool:
        """Return whether this connection may read ``stream``; override.

        Asked on every subscribe, including a client's resume after a
        reconnect, so a revoked permission takes effect then. The default
        refuses every stream.
        """
        return False

    def stream_filter(self, stream: str) -> PublicationFilter | None:
        """Return the filter of this connection's subscription to ``stream``; override.

        Asked once :meth:`authorize_stream` allowed a subscribe. A filter
        decides, for each publication of the stream, what this subscriber
        is sent, or that it is withheld
        (:mod:`django_realtime.streams.filters`). The default, ``None``,
        sends every publication as it was published; a consumer that does
        not override this method costs nothing more per publication.
        """
        return None

    async def receive_json(self, content: Any) -> None:
        """Handle one protocol frame from the client."""
        session = self.stream_session
        output: Send | Authorize | Call | None = session.receive(content)
        if isinstance(output, Authorize):
            allowed = await self._call_hook("authorize_stream", output.stream)
            output = session.authorized(output, bool(allowed))
        elif isinstance(output, Call):
            output = await self._request(session, output)
        if output is None:
            # A subscribe or unsubscribe waits on the stream lane.
            self._stream_pump().wake()
            return
        for frame in output.frames:
            await self.send(text_data=frame)

    def _stream_pump(self) -> SessionPump:
        if self._pump is None:
            self._pump = SessionPump(
                self.stream_session,
                get_stream_store(),
                self._send_frame,
                self.close,
            )
        return self._pump

    async def _send_frame(self, text: str) -> None:
        await self.base_send({"type": "websocket.send", "text": text})

    @classmethod
    def _request_handler(cls, name: str) -> bool | None:
        """Return whether the handler ``name`` is async; ``None``: no such handler."""
        try:
            return cls._requests[name]
        except KeyError:
            pass
        handler = getattr(cls, name, None)
        if not callable(handler):
            return None
        is_async = cls._requests[name] = inspect.iscoroutinefunction(handler)
        return is_async

    async def _request(self, session: StreamSession, call: Call) -> Send:
        is_async = self._request_handler(call.handler)
        if is_async is None:
            return session.unknown_request(call, type(self).__name__)
        outbox = current_outbox(self)
        held = len(outbox.messages) if outbox is not None else 0
        try:
            result = await self._invoke(
                getattr(self, call.handler), is_async, call.data
            )
            return session.replied(call, result)
        except RequestError as exc:
            if outbox is not None:
                settle(outbox, FAILED, since=held)
            return session.refused(call, exc.code, exc.message)
        except Exception as exc:
            if outbox is not None:
                settle(outbox, FAILED, since=held)
            return session.failed(call, exc)
