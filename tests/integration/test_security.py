"""Origin checks: the pure matchers without a loop, then the ASGI shells."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.middleware.origin import (
    HostRules,
    is_origin_allowed,
    is_request_origin_allowed,
    request_origin,
)
from django_realtime.security import AllowedHostsOriginValidator, OriginValidator
from django_realtime.testing import HttpCommunicator

ALLOWED = [
    "https://example.com",
    ".example.org",
    "http://.example.net:8000",
    "intranet:8080",
    "[::1]",
]


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",
        "https://example.com:443",
        "HTTPS://EXAMPLE.COM",
        "https://example.com.",
        "http://example.org",
        "https://deep.sub.example.org:9999",
        "http://example.net:8000",
        "http://a.example.net:8000",
        "http://intranet:8080",
        "https://intranet:8080",
        "http://[::1]:3000",
    ],
)
def test_origins_matching_a_pattern_are_allowed(origin: str) -> None:
    assert is_origin_allowed(origin, ALLOWED)


@pytest.mark.parametrize(
    "origin",
    [
        "http://example.com",
        "https://example.com:8443",
        "https://evil-example.com",
        "https://example.com.evil.com",
        "https://notexample.org",
        "https://example.net:8000",
        "http://example.net",
        "http://intranet",
        "http://127.0.0.1",
        "null",
        "",
        "example.com",
        "https://example.com:notaport",
        "https://user@example.com",
        "https://example.com/path",
        None,
    ],
)
def test_origins_matching_no_pattern_are_refused(origin: str | None) -> None:
    assert not is_origin_allowed(origin, ALLOWED)


@pytest.mark.parametrize("origin", ["https://anything.test", "null", None])
def test_a_star_allows_every_origin_and_none(origin: str | None) -> None:
    assert is_origin_allowed(origin, ["https://example.com", "*"])


def test_nothing_is_allowed_by_an_empty_list() -> None:
    assert not is_origin_allowed("https://example.com", [])


def test_a_single_string_instead_of_a_list_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\['example.com'\]"):
        OriginValidator(Echo.as_asgi(), "example.com")


@pytest.mark.parametrize("pattern", ["", "https://", "example.com/path", "a:b:c"])
def test_an_unparsable_pattern_is_refused_at_construction(pattern: str) -> None:
    with pytest.raises(ValueError, match="Expected an origin pattern"):
        OriginValidator(Echo.as_asgi(), [pattern])


class Echo(AsyncWebsocketConsumer):
    channel_layer_alias = None


def origin_header(origin: str | None) -> list[tuple[bytes, bytes]]:
    return [] if origin is None else [(b"origin", origin.encode())]


async def handshake(
    websocket_communicator: Any, app: Any, origin: str | None
) -> tuple[bool, Any]:
    communicator = websocket_communicator(app, "/ws/", headers=origin_header(origin))
    result: tuple[bool, Any] = await communicator.connect(timeout=5)
    return result


async def test_a_same_origin_handshake_is_accepted(websocket_communicator: Any) -> None:
    app = OriginValidator(Echo.as_asgi(), ["https://example.com"])

    accepted, _ = await handshake(websocket_communicator, app, "https://example.com")

    assert accepted


async def test_a_cross_origin_handshake_is_refused_with_one_warning(
    websocket_communicator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = OriginValidator(Echo.as_asgi(), ["https://example.com"])

    with caplog.at_level(logging.WARNING):
        accepted, code = await handshake(
            websocket_communicator, app, "https://evil.test"
        )

    assert not accepted
    assert code == 1008
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.name == "django_realtime.security"
    assert "'https://evil.test'" in record.getMessage()
    assert "/ws/" in record.getMessage()


async def test_a_handshake_without_origin_is_refused_unless_star(
    websocket_communicator: Any,
) -> None:
    strict = OriginValidator(Echo.as_asgi(), ["https://example.com"])
    open_ = OriginValidator(Echo.as_asgi(), ["*"])

    assert not (await handshake(websocket_communicator, strict, None))[0]
    assert (await handshake(websocket_communicator, open_, None))[0]


async def http_status(app: Any, origin: str | None) -> int:
    response = await HttpCommunicator(
        app, "GET", "/", headers=origin_header(origin)
    ).get_response(timeout=5)
    status: int = response["status"]
    return status


async def http_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_cross_origin_http_request_gets_403(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = OriginValidator(http_ok, ["https://example.com"])

    with caplog.at_level(logging.WARNING):
        assert await http_status(app, "https://evil.test") == 403

    assert len(caplog.records) == 1


async def test_http_requests_from_the_origin_or_without_one_pass() -> None:
    app = OriginValidator(http_ok, ["https://example.com"])

    assert await http_status(app, "https://example.com") == 200
    assert await http_status(app, None) == 200


async def test_lifespan_passes_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await OriginValidator(app, [])({"type": "lifespan"}, None, None)

    assert seen == ["lifespan"]


HOSTS = ["example.com", "127.0.0.1", "localhost", "testserver", "internal"]


def ws_scope(
    headers: list[tuple[bytes, bytes]], scheme: str = "ws", server: Any = None
) -> dict[str, Any]:
    port = 443 if scheme == "wss" else 80
    return {
        "type": "websocket",
        "scheme": scheme,
        "path": "/ws/",
        "headers": headers,
        "server": server or ("testserver", port),
    }


# (scheme, headers without Origin, origin, settings, whether it is allowed)
CSRF_CASES: list[tuple[str, list[tuple[bytes, bytes]], str, dict[str, Any], bool]] = [
    ("ws", [(b"host", b"127.0.0.1:8000")], "http://127.0.0.1:8000", {}, True),
    ("ws", [(b"host", b"127.0.0.1:8000")], "http://127.0.0.1:1", {}, False),
    ("ws", [(b"host", b"127.0.0.1:8000")], "https://127.0.0.1", {}, False),
    ("ws", [(b"host", b"127.0.0.1:8000")], "http://localhost:9", {}, False),
    ("ws", [(b"host", b"127.0.0.1:8000")], "https://127.0.0.1:8000", {}, False),
    ("ws", [(b"host", b"127.0.0.1:8000")], "http://127.0.0.1", {}, False),
    ("wss", [(b"host", b"example.com")], "https://example.com", {}, True),
    ("wss", [(b"host", b"example.com")], "http://example.com", {}, False),
    ("ws", [(b"host", b"example.com")], "https://example.com", {}, False),
    ("ws", [(b"host", b"EXAMPLE.COM")], "http://example.com", {}, False),
    ("ws", [(b"host", b"evil.test")], "http://evil.test", {}, False),
    (
        "ws",
        [(b"host", b"example.com"), (b"host", b"evil.test")],
        "http://evil.test",
        {},
        False,
    ),
    ("ws", [], "http://testserver", {}, True),
    ("wss", [], "https://testserver", {}, True),
    ("ws", [], "http://testserver:80", {}, False),
    ("ws", [(b"host", b"example.com")], "null", {}, False),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://example.com",
        {"CSRF_TRUSTED_ORIGINS": ["https://example.com"]},
        True,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://a.example.com",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]},
        True,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://example.com",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]},
        True,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "http://a.example.com",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]},
        False,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://a.example.com:8443",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]},
        False,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://a.example.com:8443",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com:8443"]},
        True,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://example.com.evil.test",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]},
        False,
    ),
    (
        "ws",
        [(b"host", b"example.com")],
        "https://*.example.com",
        {"CSRF_TRUSTED_ORIGINS": ["https://*.example.com"]},
        True,  # as Django: no browser sends it
    ),
    (
        "ws",
        [(b"host", b"example.com"), (b"x-forwarded-proto", b"https")],
        "https://example.com",
        {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")},
        True,
    ),
    (
        "wss",
        [(b"host", b"example.com"), (b"x-forwarded-proto", b"http")],
        "https://example.com",
        {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")},
        False,
    ),
    (
        "ws",
        [(b"host", b"internal:8000"), (b"x-forwarded-host", b"example.com")],
        "http://example.com",
        {"USE_X_FORWARDED_HOST": True},
        True,
    ),
    (
        "ws",
        [(b"host", b"internal:8000"), (b"x-forwarded-host", b"example.com")],
        "http://example.com",
        {},
        False,
    ),
    (
        "ws",
        [(b"host", b"internal:8000"), (b"x_forwarded_host", b"example.com")],
        "http://example.com",
        {"USE_X_FORWARDED_HOST": True},
        False,
    ),
    (
        "ws",
        [(b"x-forwarded-port", b"8000")],
        "http://testserver:8000",
        {"USE_X_FORWARDED_PORT": True},
        True,
    ),
    (
        "ws",
        [(b"host", b"localhost:8000")],
        "http://localhost:8000",
        {"ALLOWED_HOSTS": [], "DEBUG": True},
        True,
    ),
    (
        "ws",
        [(b"host", b"localhost:8000")],
        "http://localhost:8000",
        {"ALLOWED_HOSTS": [], "DEBUG": False},
        False,
    ),
    (
        "ws",
        [(b"host", b"anything.test")],
        "http://anything.test",
        {"ALLOWED_HOSTS": ["*"]},
        True,
    ),
    (
        "ws",
        [(b"host", b"anything.test")],
        "http://evil.test",
        {"ALLOWED_HOSTS": ["*"]},
        False,
    ),
]


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Answer a CSRF failure with its reason (CSRF_FAILURE_VIEW of the oracle)."""
    return HttpResponse(reason, status=403)


def django_accepts_origin(scope: dict[str, Any], origin: str) -> bool:
    """Return whether Django's CsrfViewMiddleware accepts ``origin`` on a POST."""
    http_scope = {
        **scope,
        "type": "http",
        "method": "POST",
        "scheme": "https" if scope["scheme"] == "wss" else "http",
        "headers": [*scope["headers"], (b"origin", origin.encode())],
    }
    request = ASGIRequest(http_scope, io.BytesIO())
    middleware = CsrfViewMiddleware(lambda request: HttpResponse())
    response = middleware.process_view(request, csrf_failure, (), {})
    assert response is not None, "the oracle's POST carries no CSRF token"
    return not response.content.startswith(b"Origin checking failed")


@pytest.mark.parametrize(
    ("scheme", "headers", "origin", "overrides", "allowed"), CSRF_CASES
)
def test_handshake_origins_follow_django_csrf_origin_rules(
    settings: Any,
    scheme: str,
    headers: list[tuple[bytes, bytes]],
    origin: str,
    overrides: dict[str, Any],
    allowed: bool,
) -> None:
    settings.ALLOWED_HOSTS = HOSTS
    settings.CSRF_FAILURE_VIEW = f"{__name__}.csrf_failure"
    for name, value in overrides.items():
        setattr(settings, name, value)
    scope = ws_scope(headers, scheme)

    ours = is_request_origin_allowed(origin, scope, HostRules.from_settings())

    assert ours is allowed
    assert django_accepts_origin(scope, origin) is allowed


def test_the_request_origin_is_none_for_a_host_not_allowed() -> None:
    rules = HostRules(allowed_hosts=["example.com"])

    assert request_origin(ws_scope([(b"host", b"example.com")]), rules) == (
        "http://example.com"
    )
    assert request_origin(ws_scope([(b"host", b"evil.test")]), rules) is None
    assert request_origin(ws_scope([(b"host", b"bad host")]), rules) is None


def browser(origin: str | None, host: str = "127.0.0.1:8000") -> list[Any]:
    return [(b"host", host.encode()), *origin_header(origin)]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://127.0.0.1:1", False),
        ("https://127.0.0.1", False),
        ("http://localhost:9", False),
        ("http://localhost:8000", False),
    ],
)
async def test_allowed_hosts_validator_compares_scheme_and_port_with_the_host(
    websocket_communicator: Any, settings: Any, origin: str, allowed: bool
) -> None:
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    app = AllowedHostsOriginValidator(Echo.as_asgi())

    communicator = websocket_communicator(app, "/ws/", headers=browser(origin))
    accepted, _ = await communicator.connect(timeout=5)

    assert accepted is allowed


async def test_allowed_hosts_are_read_for_each_connection(
    websocket_communicator: Any, settings: Any
) -> None:
    app = AllowedHostsOriginValidator(Echo.as_asgi())
    page = browser("http://example.com", host="example.com")
    settings.ALLOWED_HOSTS = ["example.com"]
    assert (await websocket_communicator(app, "/ws/", headers=page).connect(5))[0]

    settings.ALLOWED_HOSTS = ["example.org"]

    assert not (await websocket_communicator(app, "/ws/", headers=page).connect(5))[0]


async def test_trusted_origins_are_read_for_each_connection(
    websocket_communicator: Any, settings: Any
) -> None:
    app = AllowedHostsOriginValidator(Echo.as_asgi())
    page = browser("https://app.example.org", host="example.com")
    settings.ALLOWED_HOSTS = ["example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert not (await websocket_communicator(app, "/ws/", headers=page).connect(5))[0]

    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]

    assert (await websocket_communicator(app, "/ws/", headers=page).connect(5))[0]


async def test_a_handshake_without_origin_needs_a_star_in_allowed_hosts(
    websocket_communicator: Any, settings: Any
) -> None:
    app = AllowedHostsOriginValidator(Echo.as_asgi())
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    assert not (
        await websocket_communicator(app, "/ws/", headers=browser(None)).connect(5)
    )[0]

    settings.ALLOWED_HOSTS = ["*"]

    assert (
        await websocket_communicator(app, "/ws/", headers=browser(None)).connect(5)
    )[0]


async def test_a_refusal_says_which_origin_was_expected(
    websocket_communicator: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    app = AllowedHostsOriginValidator(Echo.as_asgi())

    with caplog.at_level(logging.WARNING, "django_realtime.security"):
        communicator = websocket_communicator(
            app, "/ws/", headers=browser("https://127.0.0.1")
        )
        assert not (await communicator.connect(timeout=5))[0]

    [record] = caplog.records
    assert "'https://127.0.0.1'" in record.getMessage()
    assert "own origin 'http://127.0.0.1:8000'" in record.getMessage()


async def test_a_refusal_escapes_control_characters_of_the_path_and_origin(
    websocket_communicator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = OriginValidator(Echo.as_asgi(), ["https://example.com"])
    forged = "%0aCRITICAL django: forged"

    with caplog.at_level(logging.WARNING, "django_realtime.security"):
        communicator = websocket_communicator(
            app, "/ws/" + forged, headers=origin_header("https://evil.test\r\nX: y")
        )
        assert not (await communicator.connect(timeout=5))[0]

    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert "\r" not in message
    assert "/ws/\\nCRITICAL django: forged" in message
    assert "evil.test\\r\\nX: y" in message
