"""Refuse connections whose ``Origin`` is not allowed.

Browsers send an ``Origin`` header with every WebSocket handshake, and do
not apply the same-origin policy to WebSockets: without a check, any page
the user visits can open a socket to your site with the user's cookies.
:class:`OriginValidator` checks the header against a list of patterns;
:class:`AllowedHostsOriginValidator` takes the list from
``settings.ALLOWED_HOSTS``, read for each connection.

A pattern is one of:

``"*"``
    Any origin, and also a handshake without one.
``"example.com"``
    That host, with any scheme and port.
``".example.com"``
    ``example.com`` and all its subdomains, with any scheme and port.
``"https://example.com"``, ``"https://.example.com:8443"``
    That scheme, host (or domain, with a leading dot) and port; a missing
    port means the scheme's default (80 for http/ws, 443 for https/wss).
``"example.com:8000"``
    That host and port, with any scheme.

Matching is the pure function :func:`is_origin_allowed`. A refused
WebSocket handshake is closed before it is accepted, so the client sees
HTTP 403; a refused HTTP request gets a 403 response. Each refusal logs one
WARNING line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from django_realtime.types import ASGIApp

__all__ = ["AllowedHostsOriginValidator", "OriginValidator", "is_origin_allowed"]

logger = logging.getLogger(__name__)


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# What Django allows when DEBUG is on and ALLOWED_HOSTS is empty.
_DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class _Parsed:
    scheme: str | None
    host: str
    port: int | None
    port_given: bool


def _parse(value: str, *, pattern: bool) -> _Parsed | None:
    """Split an origin or a pattern into scheme, host and port, or ``None``."""
    value = value.strip().lower()
    has_scheme = "://" in value
    try:
        parts = urlsplit(value if has_scheme else "//" + value)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if not host or host == "." or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    scheme = parts.scheme if has_scheme else None
    if has_scheme and not scheme:
        return None
    if not pattern and scheme is None:
        return None
    port_given = port is not None
    if port is None and scheme is not None:
        port = _DEFAULT_PORTS.get(scheme)
    if pattern and host.startswith("."):
        host = "." + host.lstrip(".")
    return _Parsed(scheme, host, port, port_given)


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def _matches(origin: _Parsed, pattern: _Parsed) -> bool:
    if pattern.scheme is not None and pattern.scheme != origin.scheme:
        return False
    if (
        pattern.scheme is not None or pattern.port_given
    ) and pattern.port != origin.port:
        return False
    return _host_matches(origin.host, pattern.host)


def is_origin_allowed(origin: str | None, allowed_origins: Iterable[str]) -> bool:
    """Return whether ``origin`` matches one of ``allowed_origins``.

    Args:
        origin: The ``Origin`` header's value (``"https://example.com:8443"``),
            or ``None`` when the request had none. ``"null"`` (sent by
            sandboxed frames and ``file:`` pages) and unparsable values match
            only ``"*"``.
        allowed_origins: Patterns, described in the module docstring;
            comparison ignores case and a trailing dot of the host.
    """
    patterns = list(allowed_origins)
    if "*" in patterns:
        return True
    if origin is None:
        return False
    parsed = _parse(origin, pattern=False)
    if parsed is None:
        return False
    for text in patterns:
        pattern = _parse(text, pattern=True)
        if pattern is not None and _matches(parsed, pattern):
            return True
    return False


def _origin_header(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"origin":
            return str(value.decode("latin-1"))
    return None


class OriginValidator:
    """Run ``application`` only for connections from an allowed origin.

    WebSocket handshakes without an ``Origin`` header are refused unless
    ``"*"`` is allowed (browsers always send one, so only other clients
    omit it). HTTP requests without one pass: browsers leave it out of
    same-origin navigations. Other scopes (``lifespan``) pass unchanged.

    Args:
        application: The ASGI application to protect.
        allowed_origins: Patterns, described in the module docstring.

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
            if pattern != "*" and _parse(pattern, pattern=True) is None:
                raise ValueError(
                    "Expected an origin pattern such as 'https://example.com', "
                    f"'.example.com' or '*', got {pattern!r}."
                )
        self.application = application
        self.allowed_origins = list(allowed_origins)

    def get_allowed_origins(self) -> Sequence[str]:
        """Return the patterns a connection's origin is checked against."""
        return self.allowed_origins

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the application, or refuse the connection."""
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.application(scope, receive, send)
            return
        origin = _origin_header(scope)
        if (kind == "http" and origin is None) or is_origin_allowed(
            origin, self.get_allowed_origins()
        ):
            await self.application(scope, receive, send)
            return
        logger.warning(
            "Refused a %s connection to %s from origin %s: it is not in the "
            "allowed origins.",
            kind,
            scope.get("path", "?"),
            "(none)" if origin is None else repr(origin),
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
    """Allow the origins whose host is in ``settings.ALLOWED_HOSTS``.

    The setting is read for each connection. With ``DEBUG`` on and
    ``ALLOWED_HOSTS`` empty, ``.localhost``, ``127.0.0.1`` and ``[::1]`` are
    allowed, as Django allows them as hosts.
    """

    def __init__(self, application: ASGIApp) -> None:
        super().__init__(application, [])

    def get_allowed_origins(self) -> Sequence[str]:
        """Return ``settings.ALLOWED_HOSTS`` (or the DEBUG defaults)."""
        hosts: Sequence[str] = settings.ALLOWED_HOSTS
        if settings.DEBUG and not hosts:
            return _DEBUG_HOSTS
        return hosts
