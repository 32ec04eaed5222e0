"""The consumer base: one ASGI application instance per connection.

A consumer receives messages from two sources, the ASGI server (its
connection) and the channel layer (its ``channel_name`` and groups), and
calls one handler per message, named after the message ``type`` with dots
turned into underscores (``chat.message`` calls ``chat_message()``; what is
not a handler is in :mod:`django_realtime.consumers.handlers`). Handlers of
one consumer never run concurrently (:mod:`django_realtime.consumers.turn`).

The logic is written once, async. A handler may be a coroutine function or a
plain function: plain functions run on the sync pool
(:mod:`django_realtime.delivery.sync`), so :class:`SyncConsumer` is only the
sync spelling of ``send()``.

Around every handler call the consumer opens an
:class:`~django_realtime.delivery.outbox.Outbox`; when each send goes out,
and whether what the handler held goes out when it ends, is decided by
:func:`django_realtime.delivery.sends.decide`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django_realtime.conf import get_setting
from django_realtime.consumers.handlers import Handlers
from django_realtime.consumers.initkwargs import check_initkwargs
from django_realtime.consumers.turn import Turn
from django_realtime.delivery.db import (
    aclose_old_connections,
    call_with_fresh_connections,
    has_loop_connections,
)
from django_realtime.delivery.outbox import (
    Outbox,
    activate,
    context_outbox,
    current_outbox,
    deactivate,
)
from django_realtime.delivery.sends import (
    FAILED,
    RETURNED,
    STOPPED,
    Outcome,
    deliver_sync,
    held_layer,
    remember_sync_connections,
    route,
    settle,
)
from django_realtime.delivery.sync import run_sync
from django_realtime.exceptions import (
    GroupsExpired,
    InvalidMessageError,
    StopConsumer,
)
from django_realtime.layers import get_channel_layer
from django_realtime.middleware.correlation import (
    KEY as CORRELATION_KEY,
    WeakSource,
    current_source,
    get_correlation_id,
    id_from_headers,
    new_correlation_id,
    reset_source,
    set_source,
)
from django_realtime.ops import metrics
from django_realtime.ops.logs import printable
from django_realtime.types import ASGIApp, Message

if TYPE_CHECKING:
    from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["AsyncConsumer", "SyncConsumer"]

logger = logging.getLogger(__name__)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def _call_in_pool(
    close_old: bool, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """Run a sync handler or hook in its pool thread."""
    remember_sync_connections(current_outbox())
    if close_old:
        return call_with_fresh_connections(fn, *args, **kwargs)
    return fn(*args, **kwargs)


class AsyncConsumer:
    """Handle the messages of one connection with async or sync handlers.

    Attributes:
        channel_layer_alias: The ``CHANNEL_LAYERS`` alias to use, or ``None``
            for a consumer without a channel layer.
        defer_sends: Hold sends until the handler returns (see the module
            docstring). HTTP consumers stream, so they send at once.
    """

    channel_layer_alias: ClassVar[str | None] = "default"
    defer_sends: ClassVar[bool] = True
    # REALTIME["CLOSE_OLD_CONNECTIONS"], read once per connection.
    _close_old: bool = False
    # The connection's correlation id, the number of its last frame, and
    # the id in force where the consumer was started (outside its messages).
    _connection_id: str = ""
    _frames: int = 0
    _outer_correlation: str | None = None

    # Per class: the handler lookup by message type, and a cache of hook
    # name -> is coroutine. Kept apart so that a message type can never
    # reach a hook through a cache.
    _handlers: ClassVar[Handlers]
    _hooks: ClassVar[dict[str, bool]] = {}

    # A plain dict for handlers: keys such as "url_route", "user" and
    # "session" are added by routers and middleware, beyond asgiref's types.
    scope: dict[str, Any]
    channel_layer: Any
    base_send: Callable[[Message], Awaitable[None]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = Handlers(cls)
        cls._hooks = {}

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.channel_layer = None
        self._channel_name: str | None = None
        # While running with a layer: start listening on the channel.
        self._listen: Callable[[], None] | None = None
        self._stop: BaseException | None = None
        # Handlers of this consumer run one at a time, whichever source their
        # message came from (the connection, the layer, a drain); an
        # uncontended turn costs no await.
        self._turn = Turn()

    @property
    def channel_name(self) -> str | None:
        """Return this consumer's channel on the layer (``None`` without one).

        The consumer listens on its channel from the first time the name is
        read, by its groups or by code that hands it out: a consumer that
        never does (an echo, say) costs no listening task and its memory.
        A message sent to the name before then waits in the layer.
        """
        if self._listen is not None:
            self._listen()
        return self._channel_name

    @channel_name.setter
    def channel_name(self, value: str | None) -> None:
        self._channel_name = value

    @property
    def correlation_id(self) -> str | None:
        """Return the correlation id of the message being handled.

        A frame from the client has ``<connection id>.<n>``; a layer message
        the id it was sent with; see :mod:`django_realtime.middleware.correlation`.
        """
        return get_correlation_id()

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> ASGIApp:
        """Return an ASGI application that runs a new consumer per connection.

        Each connection gets ``cls(**initkwargs)``, as in Channels: a name
        that the class's ``__init__`` declares goes to it, and the base
        constructor sets the others as attributes, which the class must
        already have. The names are checked here, when the routes load.

        Raises:
            TypeError: ``cls(**initkwargs)`` would fail: an argument of the
                constructor is missing, or a name is neither a parameter of
                the constructor nor an attribute of the class.
        """
        check_initkwargs(cls, initkwargs, AsyncConsumer)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Run the consumer until it stops or its connection ends."""
        self.scope = scope  # type: ignore[assignment]
        self.base_send = send  # type: ignore[assignment]
        connection_id = self.scope.get(CORRELATION_KEY)
        if connection_id is None:
            headers = self.scope.get("headers") or ()
            connection_id = id_from_headers(headers) or new_correlation_id()
            self.scope[CORRELATION_KEY] = connection_id
        self._connection_id = connection_id
        if metrics.counts is not None:
            metrics.start_timer()
        self._close_old = bool(get_setting("CLOSE_OLD_CONNECTIONS"))
        layer = None
        if self.channel_layer_alias is not None:
            layer = get_channel_layer(self.channel_layer_alias)
        # Ids are built from the handler call's outbox when asked for.
        self._outer_correlation = get_correlation_id()
        # Weak: a server may keep a copy of this context past the connection.
        self._source = WeakSource(self._correlation_in_context)
        correlation = set_source(self._source)
        try:
            if layer is None:
                turn = self._turn
                while True:
                    message = await receive()
                    if (waiting := turn.take()) is not None:
                        await waiting
                    try:
                        await self.dispatch(message)  # type: ignore[arg-type]
                    finally:
                        turn.release()
            else:
                self.channel_layer = held_layer(layer)
                await self._run_with_layer(layer, receive)
        except StopConsumer:
            pass
        finally:
            reset_source(correlation)
            if self._close_old:
                await aclose_old_connections()

    async def _run_with_layer(self, layer: Any, receive: ASGIReceiveCallable) -> None:
        self._channel_name = channel = await layer.new_channel()
        turn = self._turn
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        reader: asyncio.Task[None] | None = None

        def listen() -> None:
            nonlocal reader
            if threading.get_ident() != loop_thread:
                # Read from a sync handler's thread: start it on the loop.
                loop.call_soon_threadsafe(listen)
            elif self._listen is not None:
                self._listen = None
                reader = loop.create_task(self._read_layer(layer, turn, main))

        self._listen = listen
        try:
            while True:
                message = await receive()
                if (waiting := turn.take()) is not None:
                    await waiting
                try:
                    await self.dispatch(message)  # type: ignore[arg-type]
                finally:
                    turn.release()
        except asyncio.CancelledError:
            # The reader cancels us when a layer message's handler stopped
            # the consumer or failed; any other cancellation is the server's.
            if self._stop is None:
                raise
            if main is not None:
                main.uncancel()
            raise self._stop from None
        finally:
            self._listen = None
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            # Nobody reads the channel any more: what is queued on it goes
            # now rather than at its expiry, with a warning (layers that
            # can; channels-redis' cannot).
            discard_channel = getattr(layer, "discard_channel", None)
            if discard_channel is not None:
                discard_channel(channel)

    async def _read_layer(
        self, layer: Any, turn: Turn, main: asyncio.Task[Any] | None
    ) -> None:
        try:
            while True:
                try:
                    message = await layer.receive(self._channel_name)
                except GroupsExpired as exc:
                    if (waiting := turn.take()) is not None:
                        await waiting
                    try:
                        await self._groups_expired(exc)
                    finally:
                        turn.release()
                    continue
                if (problem := self._handlers.layer_problem(message)) is not None:
                    # Other code's mistake (a typo, a type only newer code
                    # handles, mid-deploy), or client text in a type: skip
                    # it, keep the connection.
                    logger.warning(
                        "Skipped a channel layer message for %s: %s",
                        printable(self.scope.get("path", "?")),
                        problem,
                    )
                    continue
                if (waiting := turn.take()) is not None:
                    await waiting
                try:
                    await self.dispatch(message)
                finally:
                    turn.release()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._stop = exc
            if main is not None:
                main.cancel()

    async def _groups_expired(self, exc: GroupsExpired) -> None:
        """Join the groups again that the layer took this consumer out of.

        The layer did so because the consumer's messages expired unread (it
        was busy longer than the layer's ``expiry``): what was sent to those
        groups meanwhile is lost, hence the warning.
        """
        logger.warning(
            "%s: %s Joining them again; messages sent to them meanwhile are lost.",
            type(self).__name__,
            printable(exc),
        )
        for group in exc.groups:
            await self.channel_layer.group_add(group, self._channel_name)

    async def dispatch(self, message: Message) -> None:
        """Call the handler for ``message['type']``, then settle what it held.

        What the handler held goes out or is dropped as
        :func:`~django_realtime.delivery.sends.decide` says for its outcome.

        Raises:
            InvalidMessageError: the message has no handler.
        """
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise InvalidMessageError(
                f"Expected a dict with a 'type' key, got {printable(message)}."
            ) from None
        try:
            name, is_async = self._handlers.entries[kind]
        except (KeyError, TypeError):
            name, is_async = self._handlers.lookup(kind)
        handler = getattr(self, name)
        correlation: str | int | None
        if kind == "websocket.receive":
            self._frames += 1
            correlation = self._frames
        else:
            correlation = message.get(CORRELATION_KEY)
        started = time.perf_counter() if metrics.counts is not None else None
        # The outbox holds the handler's sends and names its message for
        # the correlation id. Without held sends, the id is set as it is.
        outbox = None
        correlated = None
        if self.defer_sends:
            outbox = Outbox(self, correlation)
            token = activate(outbox)
            if current_source() is not self._source:
                # Dispatched outside the consumer's own context.
                correlated = set_source(self._source)
        else:
            correlated = set_source(self._correlation_of(correlation))
        outcome: Outcome = FAILED
        try:
            if self._close_old and has_loop_connections():
                await aclose_old_connections()
            if is_async:
                await handler(message)
            else:
                await self._invoke(handler, False, message)
            outcome = RETURNED
        except StopConsumer:
            outcome = STOPPED
            raise
        finally:
            try:
                if outbox is not None:
                    # Closed by settle(): sends made meanwhile go out at once.
                    for send, args in settle(outbox, outcome):
                        await send(*args)
            finally:
                if outbox is not None:
                    deactivate(token)
                if correlated is not None:
                    reset_source(correlated)
                if started is not None:
                    metrics.observe_handler(
                        type(self), name, time.perf_counter() - started
                    )

    def _correlation_of(self, correlation: str | int | None) -> str:
        """Return the id of a message named by ``correlation`` (see dispatch)."""
        if type(correlation) is int:
            return f"{self._connection_id}.{correlation}"
        return correlation or self._connection_id  # type: ignore[return-value]

    def _correlation_in_context(self) -> str | None:
        """Return the id of this consumer's message handled in this context.

        The correlation source of the consumer's task (and of the tasks and
        threads its handlers start): the handler call's outbox names the
        message, even once the handler has ended.
        """
        outbox = context_outbox()
        if outbox is None or outbox.owner is not self:
            return self._outer_correlation
        return self._correlation_of(outbox.correlation)

    def _call_hook(self, name: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Call the user hook ``name`` (``connect``, ``receive``, ...); await it."""
        return self._invoke(
            getattr(self, name), self._hook_is_async(name), *args, **kwargs
        )

    def _hook_is_async(self, name: str) -> bool:
        """Return whether the hook ``name`` is a coroutine function (cached)."""
        try:
            return self._hooks[name]
        except KeyError:
            is_async = self._hooks[name] = _is_async(getattr(self, name))
            return is_async

    def _invoke(
        self, fn: Callable[..., Any], is_async: bool, /, *args: Any, **kwargs: Any
    ) -> Awaitable[Any]:
        """Return the awaitable of ``fn``'s call: its own, or the pool's."""
        # Plain functions returning awaitables, not coroutines: each hook and
        # handler call costs no frame of ours on top of the callee's.
        if is_async:
            return fn(*args, **kwargs)  # type: ignore[no-any-return]
        return run_sync(_call_in_pool, self._close_old, fn, *args, **kwargs)

    def _deliver(
        self, message: Message, immediately: bool = False
    ) -> Awaitable[None] | None:
        """Send or hold ``message`` as ``decide()`` says; return what to await."""
        return route(current_outbox(self), self.base_send, (message,), immediately)

    def _deliver_sync(self, message: Message, immediately: bool = False) -> None:
        deliver_sync(current_outbox(self), self.base_send, (message,), immediately)

    async def send(self, message: Message, *, immediately: bool = False) -> None:
        """Send an ASGI ``message`` to the connection.

        Inside a handler the message is held until the handler returns,
        unless ``immediately`` is true.
        """
        # _deliver(), inlined: one frame less for every send.
        sending = route(current_outbox(self), self.base_send, (message,), immediately)
        if sending is not None:
            await sending


AsyncConsumer._handlers = Handlers(AsyncConsumer)


class SyncConsumer(AsyncConsumer):
    """A consumer whose handlers are plain functions.

    Handlers run on the sync pool, one at a time per connection and in
    parallel across connections. Inside a handler, ``self.send()`` holds the
    message without leaving the handler's thread.
    """

    def send(  # type: ignore[override]
        self, message: Message, *, immediately: bool = False
    ) -> None:
        """Send an ASGI ``message``; inside a handler it is held until the end."""
        self._deliver_sync(message, immediately)
