"""Limits against abuse: connections (per process, per client), handshakes, rates.

:class:`ConnectionLimits` wraps an ASGI application (put it outside the
router, inside the origin check) and, for WebSocket connections (and the
long ``GET`` requests of the HTTP stream transports under ``http_paths``,
for the connection limits):

- refuses a handshake when the process already holds ``max_connections``
  (the server answers HTTP 403, as for any refused handshake);
- refuses a handshake when its client already holds
  ``max_connections_per_address`` connections through this instance (the
  address as :class:`~django_realtime.middleware.clients.ClientAddress`
  finds it: the peer's, or a trusted proxy's header), or when its
  logged-in user (``scope["user"]``) holds ``max_connections_per_user``;
- refuses a connection whose application (middleware included) has
  neither accepted nor refused it ``handshake_timeout`` seconds after the
  server handed it over;
- limits each connection to ``rate`` messages a second, with bursts of up to
  ``burst``: over it, the connection is closed with
  :data:`CLOSE_RATE_LIMITED` (``policy="close"``), or the message is dropped
  and counted (``policy="drop"``).

Limits nest: an outer instance for the whole process (``max_connections``,
``handshake_timeout``, ``max_connections_per_address``) and inner ones:
inside ``AuthMiddlewareStack`` for ``max_connections_per_user`` (the user
is only known there), around the routes that need a message rate. A
connection is counted in the process once, by the outermost instance, which
alone applies ``max_connections``; each instance counts the connections
through it per client, for its own per-client limits.

Each close or first drop logs one warning; refusals log the first of a row
and then the tenth, the hundredth... with counts, so that a client
hammering at a limit writes a few lines. :data:`stats` counts them all.
The rate is a token bucket (:class:`TokenBucket`), the per-client counts
:class:`~django_realtime.middleware.clients.ClientCounter`: both pure and
tested without a loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django_realtime.middleware.clients import (
    ClientAddress,
    ClientCounter,
    Refusal,
    worth_logging,
)
from django_realtime.ops import metrics
from django_realtime.ops.logs import printable
from django_realtime.servers.daphne import gate_connection
from django_realtime.types import ASGIApp

__all__ = [
    "CLOSE_RATE_LIMITED",
    "ConnectionLimits",
    "LimitStats",
    "TokenBucket",
    "stats",
]

logger = logging.getLogger(__name__)

#: The close code for a connection over its message rate (policy "close").
CLOSE_RATE_LIMITED = 4029


@dataclass
class LimitStats:
    """Counters of :class:`ConnectionLimits` in this process (for metrics).

    Attributes:
        open: WebSocket connections open now.
        refused_over_capacity: Handshakes refused at ``max_connections``.
        refused_per_address: Handshakes refused at
            ``max_connections_per_address``.
        refused_per_user: Handshakes refused at ``max_connections_per_user``.
        handshake_timeouts: Connections closed for an unanswered handshake.
        rate_limited_closes: Connections closed for their message rate.
        rate_limited_drops: Messages dropped for their connection's rate.
    """

    open: int = 0
    refused_over_capacity: int = 0
    refused_per_address: int = 0
    refused_per_user: int = 0
    handshake_timeouts: int = 0
    rate_limited_closes: int = 0
    rate_limited_drops: int = 0


#: The process's counters.
stats = LimitStats()


def _metrics_source() -> list[tuple[str, str, int]]:
    return [
        ("handshakes", "over_capacity", stats.refused_over_capacity),
        ("handshakes", "over_address_limit", stats.refused_per_address),
        ("handshakes", "over_user_limit", stats.refused_per_user),
        ("handshakes", "timeout", stats.handshake_timeouts),
        ("rate_limited", "closed", stats.rate_limited_closes),
        ("rate_limited", "dropped", stats.rate_limited_drops),
    ]


metrics.add_source(_metrics_source)


class TokenBucket:
    """Allow ``rate`` events a second on average, ``burst`` at once.

    Args:
        rate: Tokens added per second.
        burst: Most tokens held (the bucket starts full).
        now: The current time in seconds.
    """

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(
                f"Expected rate > 0 and burst >= 1, got {rate!r}, {burst!r}."
            )
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        """Take a token at ``now``; return whether there was one."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True


class ConnectionLimits:
    """Apply connection and message limits to WebSocket connections.

    Args:
        application: The ASGI application to protect.
        max_connections: Most WebSocket connections open in this process
            (``None``: no limit).
        max_connections_per_address: Most WebSocket connections through
            this instance from one client address (``None``: no limit).
        max_connections_per_user: Most WebSocket connections through this
            instance of one logged-in user (``None``: no limit). Anonymous
            connections are not counted; this instance must be inside
            ``AuthMiddlewareStack``.
        client_address: Where the client address comes from (default: the
            peer address, ``scope["client"]``).
        handshake_timeout: Seconds the application has to accept or refuse
            a handshake (``None``: no limit).
        rate: Messages a second each connection may send on average
            (``None``: no limit).
        burst: Messages a connection may send at once (default: ``rate``,
            at least 1).
        policy: ``"close"`` (close with :data:`CLOSE_RATE_LIMITED`) or
            ``"drop"`` (drop the message, count it) over the rate.
        clock: Return the time in seconds.
        http_paths: Path prefixes of HTTP stream transports
            (:func:`~django_realtime.streams.http.stream_http_urls`): a
            ``GET`` under one (an event stream, a long-poll) counts as a
            connection while it lasts, under the same connection limits,
            and is refused with 503 (the process is full) or 429 (its
            client is) and a JSON body.
    """

    def __init__(
        self,
        application: ASGIApp,
        *,
        max_connections: int | None = None,
        max_connections_per_address: int | None = None,
        max_connections_per_user: int | None = None,
        client_address: ClientAddress | None = None,
        handshake_timeout: float | None = 10.0,
        rate: float | None = None,
        burst: float | None = None,
        policy: str = "close",
        clock: Callable[[], float] = time.monotonic,
        http_paths: Sequence[str] = (),
    ) -> None:
        if isinstance(http_paths, str):
            raise TypeError(f"Expected a list of path prefixes, got {http_paths!r}.")
        self.http_paths = tuple(http_paths)
        if policy not in ("close", "drop"):
            raise ValueError(f"Expected policy 'close' or 'drop', got {policy!r}.")
        for name, limit in (
            ("max_connections", max_connections),
            ("max_connections_per_address", max_connections_per_address),
            ("max_connections_per_user", max_connections_per_user),
        ):
            if limit is not None and (type(limit) is not int or limit < 1):
                raise ValueError(f"Expected {name} >= 1, got {limit!r}.")
        if handshake_timeout is not None and handshake_timeout <= 0:
            raise ValueError(
                f"Expected handshake_timeout > 0, got {handshake_timeout!r}."
            )
        if rate is not None:
            TokenBucket(rate, burst or max(rate, 1.0), 0.0)  # validate
        self.application = application
        self.max_connections = max_connections
        self.client_address = client_address or ClientAddress()
        self.addresses = (
            None
            if max_connections_per_address is None
            else ClientCounter(max_connections_per_address)
        )
        self.users = (
            None
            if max_connections_per_user is None
            else ClientCounter(max_connections_per_user)
        )
        self._over_capacity_in_a_row = 0
        self.handshake_timeout = handshake_timeout
        self.rate = rate
        self.burst = burst or (max(rate, 1.0) if rate is not None else None)
        self.policy = policy
        self.clock = clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the application under the limits (WebSockets, ``http_paths`` GETs).

        Raises:
            ValueError: ``max_connections_per_user`` is set and the scope has
                no ``"user"`` (this instance is outside ``AuthMiddlewareStack``).
        """
        kind = scope["type"]
        if kind == "http" and self._is_stream_get(scope):
            await self._run_counted(scope, receive, send, _refuse_http)
            return
        if kind != "websocket":
            await self.application(scope, receive, send)
            return
        scope, send = gate_connection(scope, send)  # Outermost on daphne.
        await self._run_counted(scope, receive, send, _refuse)

    def _is_stream_get(self, scope: Any) -> bool:
        path = str(scope.get("path", ""))
        return scope.get("method") == "GET" and path.startswith(self.http_paths)

    async def _run_counted(
        self,
        scope: Any,
        receive: Any,
        send: Any,
        refuse: Callable[[Any, Any, int], Awaitable[None]],
    ) -> None:
        path = scope.get("path", "?")
        # Only the outermost instance counts the connection in the process
        # and applies max_connections; each applies its per-client limits.
        outermost = _COUNTED not in scope
        if outermost:
            scope[_COUNTED] = True
            if self._over_capacity(path):
                await refuse(receive, send, 503)
                return
        counted = self._count_client(scope, path)
        if counted is None:
            await refuse(receive, send, 429)
            return
        if outermost:
            stats.open += 1
        try:
            if scope["type"] == "http":
                await self.application(scope, receive, send)
            else:
                await _Connection(self, path, receive, send).run(scope)
        finally:
            if outermost:
                stats.open -= 1
            for counter, client in counted:
                counter.close(client)

    def _over_capacity(self, path: str) -> bool:
        """Return whether the process holds ``max_connections`` (log, count)."""
        if self.max_connections is None or stats.open < self.max_connections:
            self._over_capacity_in_a_row = 0
            return False
        stats.refused_over_capacity += 1
        self._over_capacity_in_a_row += 1
        if worth_logging(self._over_capacity_in_a_row):
            logger.warning(
                "Refused a WebSocket to %s: this process holds %d connections, "
                "its max_connections (%d refused in a row; the 1st, 10th, "
                "100th... are logged).",
                printable(path),
                stats.open,
                self._over_capacity_in_a_row,
            )
        return True

    def _count_client(
        self, scope: Any, path: str
    ) -> list[tuple[ClientCounter, str]] | None:
        """Count the connection against the per-client limits.

        Returns:
            The counters and keys to close when the connection ends, or
            ``None`` when a limit refuses it (logged and counted).
        """
        # Every key first: a scope without a user raises before any count.
        keys: list[tuple[ClientCounter, str | None, str]] = []
        if self.addresses is not None:
            keys.append((self.addresses, self.client_address.of(scope), "address"))
        if self.users is not None:
            keys.append((self.users, _user_key(scope), "user"))
        counted: list[tuple[ClientCounter, str]] = []
        for counter, client, per in keys:
            if client is None:
                continue
            refusal = counter.open(client)
            if refusal is not None:
                for opened, key in counted:
                    opened.close(key)
                name = f"refused_per_{per}"
                setattr(stats, name, getattr(stats, name) + 1)
                _log_refusal(refusal, f"max_connections_per_{per}", path)
                return None
            counted.append((counter, client))
        return counted


def _user_key(scope: Any) -> str | None:
    """Return ``"user <pk>"`` for a logged-in user, ``None`` for an anonymous one."""
    if "user" not in scope:
        raise ValueError(
            "ConnectionLimits(max_connections_per_user=...) expected "
            "scope['user'], which AuthMiddlewareStack sets, got a scope without "
            "one: put this ConnectionLimits inside AuthMiddlewareStack."
        )
    user = scope["user"]
    if not getattr(user, "is_authenticated", False):
        return None
    return f"user {user.pk}"


def _log_refusal(refusal: Refusal, limit: str, path: str) -> None:
    if refusal.log:
        logger.warning(
            "Refused a WebSocket to %s from %s: it holds %d connections, its %s "
            "(%d refused in a row; the 1st, 10th, 100th... are logged).",
            printable(path),
            printable(refusal.client),
            refusal.held,
            limit,
            refusal.in_a_row,
        )


async def _refuse_http(receive: Any, send: Any, status: int) -> None:
    """Refuse an HTTP stream transport's request with ``status`` and a JSON body."""
    code = "over_capacity" if status == 503 else "too_many_connections"
    body = json.dumps({"error": code, "message": "Over the connection limits."})
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


async def _refuse(receive: Any, send: Any, status: int = 403) -> None:
    """Refuse the handshake: closed before accept, the client sees HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1013})


class _Connection:
    """One connection's handshake timer and message bucket."""

    def __init__(
        self, limits: ConnectionLimits, path: str, receive: Any, send: Any
    ) -> None:
        self.limits = limits
        self.path = path
        self.server_receive = receive
        self.server_send = send
        self.answered = False
        self.closed = False
        self.close_code = 1006
        self.dropped = 0
        self.timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Future[None] | None = None
        self.bucket = (
            None
            if limits.rate is None or limits.burst is None
            else TokenBucket(limits.rate, limits.burst, limits.clock())
        )

    async def run(self, scope: Any) -> None:
        # From the start: middleware working before the application reads
        # the handshake (sessions, auth) is inside the time limit too.
        self._start_timer()
        try:
            await self.limits.application(scope, self.receive, self.send)
        finally:
            if self.timer is not None:
                self.timer.cancel()

    async def send(self, message: dict[str, Any]) -> None:
        if not self.answered and message["type"] in _ANSWERS:
            self.answered = True
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        if not self.closed:
            await self.server_send(message)
        # Else the limits closed the connection: nothing more goes out.

    async def receive(self) -> dict[str, Any]:
        while not self.closed:
            message: dict[str, Any] = await self.server_receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if self.bucket is None or self.bucket.take(self.limits.clock()):
                    return message
                await self._over_rate()
            else:
                return message
        # The limits closed it: tell the application the client has gone.
        return {"type": "websocket.disconnect", "code": self.close_code}

    async def _over_rate(self) -> None:
        limits = self.limits
        if limits.policy == "drop":
            stats.rate_limited_drops += 1
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "Dropping messages of the WebSocket to %s: over %s a second "
                    "(bursts of %s); they are counted in stats.",
                    printable(self.path),
                    limits.rate,
                    limits.burst,
                )
            return
        stats.rate_limited_closes += 1
        logger.warning(
            "Closing the WebSocket to %s with %d: over %s messages a second "
            "(bursts of %s).",
            printable(self.path),
            CLOSE_RATE_LIMITED,
            limits.rate,
            limits.burst,
        )
        await self._close(CLOSE_RATE_LIMITED)

    def _start_timer(self) -> None:
        timeout = self.limits.handshake_timeout
        if timeout is not None and not self.answered:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(timeout, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self.timer = None
        if self.answered:
            return
        stats.handshake_timeouts += 1
        logger.warning(
            "Refused the WebSocket to %s: the application neither accepted nor "
            "refused it within %s s.",
            printable(self.path),
            self.limits.handshake_timeout,
        )
        # Refused before accept: the client sees HTTP 403; the server then
        # tells the application the client has gone.
        self._closing = asyncio.ensure_future(self._close(1013))

    async def _close(self, code: int) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = code
            await self.server_send({"type": "websocket.close", "code": code})


# The scope key by which an inner ConnectionLimits knows an outer one counts.
_COUNTED = "realtime.limits"

_ANSWERS = frozenset(
    {"websocket.accept", "websocket.close", "websocket.http.response.start"}
)
