"""Match ``Origin`` headers: pattern lists, and Django's CSRF origin rules.

Pure functions of their arguments, with no I/O; the ASGI shells that
refuse connections are in :mod:`django_realtime.security`.

:func:`is_origin_allowed` matches an origin against patterns (those of
:class:`~django_realtime.security.OriginValidator`):

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

:func:`is_request_origin_allowed` applies Django's CSRF origin check
(``CsrfViewMiddleware``) to a connection's scope: the origin must equal the
connection's own origin, :func:`request_origin` (``scheme://host[:port]``,
the scheme ``http`` for ``ws`` and ``https`` for ``wss`` or as
``SECURE_PROXY_SSL_HEADER`` says, the host from the ``Host`` header, or
``X-Forwarded-Host`` with ``USE_X_FORWARDED_HOST``, or the server's name and
port, and in ``ALLOWED_HOSTS``), or be one of ``CSRF_TRUSTED_ORIGINS``, or
match one written with a wildcard (``"https://*.example.com"``). The
settings come in a :class:`HostRules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_realtime.types import Headers

__all__ = [
    "HostRules",
    "is_origin_allowed",
    "is_origin_pattern",
    "is_request_origin_allowed",
    "origin_of",
    "request_origin",
]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# What Django allows when DEBUG is on and ALLOWED_HOSTS is empty.
_DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")
# Django's host syntax (django.http.request): a name or a bracketed IPv6
# address, and an optional port.
_HOST = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]+))?")


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


def _same_domain(host: str, pattern: str) -> bool:
    """Return whether ``host`` is ``pattern``, or under it if it starts with a dot."""
    pattern = pattern.lower()
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return bool(pattern) and host == pattern


def _matches(origin: _Parsed, pattern: _Parsed) -> bool:
    if pattern.scheme is not None and pattern.scheme != origin.scheme:
        return False
    if (
        pattern.scheme is not None or pattern.port_given
    ) and pattern.port != origin.port:
        return False
    return _same_domain(origin.host, pattern.host)


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


@dataclass(frozen=True)
class HostRules:
    """The settings that decide a connection's own origin, as Django reads them.

    Attributes:
        allowed_hosts: ``ALLOWED_HOSTS`` (with ``DEBUG`` on and the setting
            empty, Django's local defaults).
        trusted_origins: ``CSRF_TRUSTED_ORIGINS``.
        use_x_forwarded_host: ``USE_X_FORWARDED_HOST``.
        use_x_forwarded_port: ``USE_X_FORWARDED_PORT``.
        secure_proxy_ssl_header: ``SECURE_PROXY_SSL_HEADER``, a Django
            ``META`` name and value such as ``("HTTP_X_FORWARDED_PROTO",
            "https")``, or ``None``.
    """

    allowed_hosts: Sequence[str]
    trusted_origins: Sequence[str] = ()
    use_x_forwarded_host: bool = False
    use_x_forwarded_port: bool = False
    secure_proxy_ssl_header: tuple[str, str] | None = None

    @classmethod
    def from_settings(cls) -> HostRules:
        """Return the rules of the current settings.

        Raises:
            ImproperlyConfigured: ``SECURE_PROXY_SSL_HEADER`` is not a pair.
        """
        hosts: Sequence[str] = settings.ALLOWED_HOSTS
        if settings.DEBUG and not hosts:
            hosts = _DEBUG_HOSTS
        header: tuple[str, str] | None = None
        if settings.SECURE_PROXY_SSL_HEADER:
            try:
                name, value = settings.SECURE_PROXY_SSL_HEADER
            except (TypeError, ValueError):
                raise ImproperlyConfigured(
                    "SECURE_PROXY_SSL_HEADER must be a (header, value) tuple, "
                    f"got {settings.SECURE_PROXY_SSL_HEADER!r}."
                ) from None
            header = (name, value)
        return cls(
            allowed_hosts=tuple(hosts),
            trusted_origins=tuple(settings.CSRF_TRUSTED_ORIGINS),
            use_x_forwarded_host=bool(settings.USE_X_FORWARDED_HOST),
            use_x_forwarded_port=bool(settings.USE_X_FORWARDED_PORT),
            secure_proxy_ssl_header=header,
        )


def _meta(headers: Headers) -> dict[str, str]:
    """Return the headers as Django's ``request.META`` holds them.

    Names with an underscore are left out and repeated headers are joined
    with commas, as Django's ASGI handler does.
    """
    joined: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        if "_" in name:
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _is_secure(
    scope: Mapping[str, Any], meta: dict[str, str], rules: HostRules
) -> bool:
    if rules.secure_proxy_ssl_header is not None:
        name, secure_value = rules.secure_proxy_ssl_header
        value = meta.get(name)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("https", "wss")


def _raw_host(
    scope: Mapping[str, Any], meta: dict[str, str], rules: HostRules, secure: bool
) -> str:
    if rules.use_x_forwarded_host and "HTTP_X_FORWARDED_HOST" in meta:
        return meta["HTTP_X_FORWARDED_HOST"]
    if "HTTP_HOST" in meta:
        return meta["HTTP_HOST"]
    server = scope.get("server")
    name, port = (str(server[0]), str(server[1])) if server else ("unknown", "0")
    if rules.use_x_forwarded_port and "HTTP_X_FORWARDED_PORT" in meta:
        port = meta["HTTP_X_FORWARDED_PORT"]
    return name if port == ("443" if secure else "80") else f"{name}:{port}"


def _host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    match = _HOST.fullmatch(host.lower())
    if match is None:
        return False
    domain = match[1].removesuffix(".")
    return bool(domain) and any(
        pattern == "*" or _same_domain(domain, pattern) for pattern in allowed_hosts
    )


def request_origin(scope: Mapping[str, Any], rules: HostRules) -> str | None:
    """Return the origin of the connection itself, as Django would build it.

    Args:
        scope: An ``http`` or ``websocket`` scope.
        rules: The settings to apply.

    Returns:
        ``"scheme://host[:port]"``, or ``None`` when the host is not in
        ``rules.allowed_hosts`` (Django would raise ``DisallowedHost``).
    """
    meta = _meta(scope.get("headers", ()))
    secure = _is_secure(scope, meta, rules)
    host = _raw_host(scope, meta, rules, secure)
    if not _host_allowed(host, rules.allowed_hosts):
        return None
    return f"{'https' if secure else 'http'}://{host}"


def is_request_origin_allowed(
    origin: str, scope: Mapping[str, Any], rules: HostRules
) -> bool:
    """Return whether Django's CSRF check would accept ``origin`` for ``scope``.

    ``origin`` must equal :func:`request_origin` exactly, or be one of
    ``rules.trusted_origins``, or match one of them written with a
    wildcard (``"https://*.example.com"``: that scheme, and the domain or
    any subdomain of it, with the port written there).
    """
    if origin == request_origin(scope, rules):
        return True
    if origin in rules.trusted_origins and "*" not in origin:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    for trusted in rules.trusted_origins:
        if "*" not in trusted:
            continue
        try:
            pattern = urlsplit(trusted)
        except ValueError:
            continue
        if pattern.scheme == parts.scheme and _same_domain(
            parts.netloc, pattern.netloc.lstrip("*")
        ):
            return True
    return False


def is_origin_pattern(pattern: str) -> bool:
    """Return whether :func:`is_origin_allowed` understands ``pattern``."""
    return pattern == "*" or _parse(pattern, pattern=True) is not None


def origin_of(headers: Headers) -> str | None:
    """Return the ``Origin`` header (repeated ones joined by commas), or ``None``."""
    return _meta(headers).get("HTTP_ORIGIN")
