"""Limits against abuse: connections per process, handshake time, message rate.

:class:`ConnectionLimits` wraps an ASGI application (put it outside the
router, inside the origin check) and, for WebSocket connections only:

- refuses a handshake when the process already holds ``max_connections``
  (the server answers HTTP 403, as for any refused handshake);
- refuses a connection whose application (middleware included) has
  neither accepted nor refused it ``handshake_timeout`` seconds after the
  server handed it over;
- limits each connection to ``rate`` messages a second, with bursts of up to
  ``burst``: over it, the connection is closed with
  :data:`CLOSE_RATE_LIMITED` (``policy="close"``), or the message is dropped
  and counted (``policy="drop"``).

Limits nest: an outer instance for the whole process (``max_connections``,
``handshake_timeout``) and inner ones around the routes that need a message
rate; a connection is counted once, by the outermost, which alone applies
``max_connections``.

Each refusal, close or first drop logs one warning; :data:`stats` counts
them all. The rate is a token bucket (:class:`TokenBucket`), pure and
tested without a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django_realtime.ops import metrics
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
        handshake_timeouts: Connections closed for an unanswered handshake.
        rate_limited_closes: Connections closed for their message rate.
        rate_limited_drops: Messages dropped for their connection's rate.
    """

    open: int = 0
    refused_over_capacity: int = 0
    handshake_timeouts: int = 0
    rate_limited_closes: int = 0
    rate_limited_drops: int = 0


#: The process's counters.
stats = LimitStats()


def _metrics_source() -> list[tuple[str, str, int]]:
    return [
        ("handshakes", "over_capacity", stats.refused_over_capacity),
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
        handshake_timeout: Seconds the application has to accept or refuse
            a handshake (``None``: no limit).
        rate: Messages a second each connection may send on average
            (``None``: no limit).
        burst: Messages a connection may send at once (default: ``rate``,
            at least 1).
        policy: ``"close"`` (close with :data:`CLOSE_RATE_LIMITED`) or
            ``"drop"`` (drop the message, count it) over the rate.
        clock: Return the time in seconds.
    """

    def __init__(
        self,
        application: ASGIApp,
        *,
        max_connections: int | None = None,
        handshake_timeout: float | None = 10.0,
        rate: float | None = None,
        burst: float | None = None,
        policy: str = "close",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy not in ("close", "drop"):
            raise ValueError(f"Expected policy 'close' or 'drop', got {policy!r}.")
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"Expected max_connections >= 1, got {max_connections!r}.")
        if handshake_timeout is not None and handshake_timeout <= 0:
            raise ValueError(
                f"Expected handshake_timeout > 0, got {handshake_timeout!r}."
            )
        if rate is not None:
            TokenBucket(rate, burst or max(rate, 1.0), 0.0)  # validate
        self.application = application
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.rate = rate
        self.burst = burst or (max(rate, 1.0) if rate is not None else None)
        self.policy = policy
        self.clock = clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the application under the limits (WebSocket connections only)."""
        if scope["type"] != "websocket":
            await self.application(scope, receive, send)
            return
        if _COUNTED in scope:
            # An outer ConnectionLimits counts this connection and applied
            # max_connections: only this one's timeout and rate apply here.
            await _Connection(self, scope.get("path", "?"), receive, send).run(scope)
            return
        scope[_COUNTED] = True
        path = scope.get("path", "?")
        if self.max_connections is not None and stats.open >= self.max_connections:
            stats.refused_over_capacity += 1
            logger.warning(
                "Refused a WebSocket to %s: this process holds %d connections, "
                "its max_connections.",
                path,
                stats.open,
            )
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1013})
            return
        stats.open += 1
        try:
            await _Connection(self, path, receive, send).run(scope)
        finally:
            stats.open -= 1


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
                    self.path,
                    limits.rate,
                    limits.burst,
                )
            return
        stats.rate_limited_closes += 1
        logger.warning(
            "Closing the WebSocket to %s with %d: over %s messages a second "
            "(bursts of %s).",
            self.path,
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
            self.path,
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
