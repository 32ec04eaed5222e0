"""LoginRequiredMixin: anonymous users never reach connect()."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser

from django_realtime.consumers import (
    AsyncWebsocketConsumer,
    LoginRequiredMixin,
    WebsocketConsumer,
)
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class User:
    is_authenticated = True


class Private(LoginRequiredMixin, AsyncWebsocketConsumer):
    channel_layer_alias = None
    connected: list[Any] = []

    async def connect(self) -> None:
        self.connected.append(self.scope["user"])
        await self.accept()


class SyncPrivate(LoginRequiredMixin, WebsocketConsumer):
    channel_layer_alias = None
    login_required_close_code = None

    def connect(self) -> None:
        self.accept()


def with_user(app: Any, user: Any) -> Any:
    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "user": user}, receive, send)

    return middleware


async def test_a_logged_in_user_reaches_connect() -> None:
    user = User()
    communicator = WebsocketCommunicator(with_user(Private.as_asgi(), user), "/ws/")
    assert (await communicator.connect())[0]
    assert Private.connected[-1] is user
    await communicator.disconnect()


async def test_an_anonymous_user_is_accepted_then_closed_with_4003(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Private.connected.clear()
    communicator = WebsocketCommunicator(
        with_user(Private.as_asgi(), AnonymousUser()), "/ws/p/"
    )
    with caplog.at_level(logging.INFO, "django_realtime.consumers"):
        assert (await communicator.connect())[0]
        assert await communicator.receive_output() == {
            "type": "websocket.close",
            "code": 4003,
        }
    assert Private.connected == []
    assert "Refused an anonymous WebSocket to /ws/p/: login required." in caplog.text
    await communicator.disconnect()


async def test_the_handshake_itself_can_be_refused() -> None:
    communicator = WebsocketCommunicator(
        with_user(SyncPrivate.as_asgi(), AnonymousUser()), "/ws/"
    )
    assert await communicator.connect() == (False, 1000)
    await communicator.disconnect()


async def test_without_auth_middleware_every_connection_is_refused_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    communicator = WebsocketCommunicator(Private.as_asgi(), "/ws/")
    with caplog.at_level(logging.ERROR, "django_realtime.consumers"):
        assert (await communicator.connect())[0]
        assert (await communicator.receive_output())["code"] == 4003
    assert "Put AuthMiddlewareStack in front of the routes" in caplog.text
    await communicator.disconnect()


async def test_the_refusal_log_line_escapes_and_cuts_the_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    communicator = WebsocketCommunicator(
        with_user(Private.as_asgi(), AnonymousUser()), "/ws/"
    )
    communicator.scope["path"] = "/ws/\nforged line" + "p" * 5_000
    with caplog.at_level(logging.INFO, "django_realtime.consumers"):
        assert (await communicator.connect())[0]
        await communicator.receive_output()
    (line,) = [r.getMessage() for r in caplog.records if "anonymous" in r.message]
    assert "/ws/\\nforged line" in line
    assert "\n" not in line
    assert len(line) < 1_000
    await communicator.disconnect()
