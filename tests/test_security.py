"""Origin checks: the pure matcher without a loop, then the ASGI shells."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.security import (
    AllowedHostsOriginValidator,
    OriginValidator,
    is_origin_allowed,
)
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


async def test_allowed_hosts_are_read_for_each_connection(
    websocket_communicator: Any, settings: Any
) -> None:
    app = AllowedHostsOriginValidator(Echo.as_asgi())
    settings.ALLOWED_HOSTS = ["example.com"]
    assert (await handshake(websocket_communicator, app, "https://example.com"))[0]

    settings.ALLOWED_HOSTS = [".example.org"]

    assert not (await handshake(websocket_communicator, app, "https://example.com"))[0]
    assert (await handshake(websocket_communicator, app, "http://www.example.org"))[0]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:8000", True),
        ("http://app.localhost:8000", True),
        ("http://127.0.0.1:8000", True),
        ("http://[::1]:8000", True),
        ("http://example.com", False),
    ],
)
async def test_debug_with_empty_allowed_hosts_allows_local_hosts_like_django(
    websocket_communicator: Any, settings: Any, origin: str, allowed: bool
) -> None:
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = []
    app = AllowedHostsOriginValidator(Echo.as_asgi())

    assert (await handshake(websocket_communicator, app, origin))[0] is allowed


async def test_empty_allowed_hosts_without_debug_allows_nothing(
    websocket_communicator: Any, settings: Any
) -> None:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = []
    app = AllowedHostsOriginValidator(Echo.as_asgi())

    assert not (await handshake(websocket_communicator, app, "http://localhost"))[0]
