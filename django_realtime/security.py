"""Refuse connections whose ``Origin`` is not allowed.

Browsers send an ``Origin`` header with every WebSocket handshake, and do
not apply the same-origin policy to WebSockets: without a check, any page
the user visits can open a socket to your site with the user's cookies.

:class:`AllowedHostsOriginValidator` applies Django's CSRF origin rules to
the handshake: the origin must be the connection's own
(``scheme://host[:port]``, with ``ws`` read as ``http`` and ``wss`` as
``https``, and the host in ``ALLOWED_HOSTS``), scheme and port included, or
be trusted by ``CSRF_TRUSTED_ORIGINS``. :class:`OriginValidator` checks the
header against a list of patterns instead. The matching itself is pure, in
:mod:`django_realtime.middleware.origin`.

A refused WebSocket handshake is closed before it is accepted, so the
client sees HTTP 403; a refused HTTP request gets a 403 response. Each
refusal logs one WARNING line, its client values escaped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from django_realtime.middleware.origin import (
    HostRules,
    is_origin_allowed,
    is_origin_pattern,
    is_request_origin_allowed,
    origin_of,
    request_origin,
)
from django_realtime.ops.logs import printable
from django_realtime.routing import ProtocolTypeRouter, URLRouter
from django_realtime.types import ASGIApp

# is_origin_allowed stays importable from here, where it used to live.
__all__ = [
    "AllowedHostsOriginValidator",
    "OriginValidator",
    "unguarded_websocket_routes",
]

logger = logging.getLogger(__name__)


class OriginValidator:
    """Run ``application`` only for connections from an allowed origin.

    WebSocket handshakes without an ``Origin`` header are refused unless
    ``"*"`` is allowed (browsers always send one, so only other clients
    omit it). HTTP requests without one pass: browsers leave it out of
    same-origin navigations. Other scopes (``lifespan``) pass unchanged.

    Args:
        application: The ASGI application to protect.
        allowed_origins: Patterns (see :mod:`django_realtime.middleware.origin`):
            ``"*"``, a host (``"example.com"``: any scheme and port), a
            domain and its subdomains (``".example.com"``), a host and port
            (``"example.com:8000"``: any scheme), or a full origin
            (``"https://example.com"``: that scheme, and that port or the
            scheme's default).

    Raises:
        TypeError: ``allowed_origins`` is a string instead of a list of them.
        ValueError: A pattern cannot be parsed.
    """

    def __init__(self, application: ASGIApp, allowed_origins: Sequence[str]) -> None:
        if isinstance(allowed_origins, str | bytes):
            raise TypeError(
                "OriginValidator expected a list of origin patterns, got the "
                f"single string {allowed_origins!r}: write [{allowed_origins!r}]."
            )
        for pattern in allowed_origins:
            if not is_origin_pattern(pattern):
                raise ValueError(
                    "Expected an origin pattern such as 'https://example.com', "
                    f"'.example.com' or '*', got {pattern!r}."
                )
        self.application = application
        self.allowed_origins = list(allowed_origins)

    def get_allowed_origins(self) -> Sequence[str]:
        """Return the patterns a connection's origin is checked against."""
        return self.allowed_origins

    def allows(self, scope: Any, origin: str | None) -> bool:
        """Return whether a connection of ``scope`` from ``origin`` may go on."""
        return is_origin_allowed(origin, self.get_allowed_origins())

    def expected(self, scope: Any) -> str:
        """Describe the origins allowed, for the log line of a refusal."""
        return "one of the allowed origins " + ", ".join(
            map(repr, self.get_allowed_origins())
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the application, or refuse the connection."""
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.application(scope, receive, send)
            return
        origin = origin_of(scope.get("headers", ()))
        if (kind == "http" and origin is None) or self.allows(scope, origin):
            await self.application(scope, receive, send)
            return
        logger.warning(
            "Refused a %s connection to %s from origin %s: expected %s.",
            kind,
            printable(scope.get("path", "?")),
            "(none)" if origin is None else f"'{printable(origin)}'",
            printable(self.expected(scope)),
        )
        if kind == "websocket":
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": b"Origin not allowed."})


class AllowedHostsOriginValidator(OriginValidator):
    """Allow the connection's own origin and ``CSRF_TRUSTED_ORIGINS``.

    The rules are those of Django's CSRF origin check (see the module
    docstring), with the settings read for each connection. A WebSocket
    handshake without an ``Origin`` header (not a browser) is refused,
    unless ``ALLOWED_HOSTS`` contains ``"*"``.
    """

    def __init__(self, application: ASGIApp) -> None:
        super().__init__(application, [])

    def get_allowed_origins(self) -> Sequence[str]:
        """Return ``settings.CSRF_TRUSTED_ORIGINS``."""
        return list(settings.CSRF_TRUSTED_ORIGINS)

    def allows(self, scope: Any, origin: str | None) -> bool:
        """Return whether Django's CSRF origin check accepts ``origin``."""
        if origin is None:
            return "*" in settings.ALLOWED_HOSTS
        return is_request_origin_allowed(origin, scope, HostRules.from_settings())

    def expected(self, scope: Any) -> str:
        """Describe the connection's own origin, for the log line of a refusal."""
        own = request_origin(scope, HostRules.from_settings())
        if own is None:
            return (
                "an origin in CSRF_TRUSTED_ORIGINS (the host is not in ALLOWED_HOSTS)"
            )
        return f"the connection's own origin {own!r} or one in CSRF_TRUSTED_ORIGINS"


# Where middleware keeps the application it wraps (ours, Channels', Django's).
_INNER_ATTRIBUTES = ("inner", "application", "app")


def unguarded_websocket_routes(application: object) -> list[str] | None:
    """Return the WebSocket routes of ``application`` that no origin check guards.

    The walk follows the ``"websocket"`` entry of a
    :class:`~django_realtime.routing.ProtocolTypeRouter`, every route of a
    :class:`~django_realtime.routing.URLRouter`, and middleware that keeps
    the application it wraps in an ``inner``, ``application`` or ``app``
    attribute, down to consumers. An :class:`OriginValidator` that allows
    ``"*"`` guards nothing.

    Returns:
        The route patterns (``"ws/chat/<room>/"``; ``"(every path)"`` for a
        consumer without a router) that lead to a consumer without passing
        an origin check; ``None`` when the walk cannot see any consumer (a
        plain function, say); ``[]`` when every route is guarded or there is
        no WebSocket application.
    """
    return _unguarded(application, "", 0)


def _unguarded(application: object, prefix: str, depth: int) -> list[str] | None:
    if depth > 100:  # A wrapper that wraps itself: nothing to see.
        return None
    if isinstance(application, OriginValidator) and "*" not in (
        application.allowed_origins
    ):
        return []
    if isinstance(application, ProtocolTypeRouter):
        websocket = application.application_mapping.get("websocket")
        return [] if websocket is None else _unguarded(websocket, prefix, depth + 1)
    if isinstance(application, URLRouter):
        seen = [
            _unguarded(route.application, prefix + str(route.pattern), depth + 1)
            for route in application.routes
        ]
        if all(routes is None for routes in seen):
            return None
        return [route for routes in seen if routes for route in routes]
    if getattr(application, "consumer_class", None) is not None:
        return [prefix or "(every path)"]
    for name in _INNER_ATTRIBUTES:
        inner = getattr(application, name, None)
        if inner is not None and inner is not application and callable(inner):
            return _unguarded(inner, prefix, depth + 1)
    return None
