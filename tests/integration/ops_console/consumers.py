"""The applications of the ops console tests."""

from __future__ import annotations

from typing import Any

from django.urls import path

from django_realtime.routing import URLRouter
from tests.integration.drain.consumers import Echo, Streams


def as_user(user: Any) -> Any:
    """Return the tests' WebSocket routes, with ``scope["user"]`` set to ``user``."""
    router = URLRouter(
        [path("ws/echo/", Echo.as_asgi()), path("ws/streams/", Streams.as_asgi())]
    )

    async def application(scope: Any, receive: Any, send: Any) -> None:
        await router({**scope, "user": user}, receive, send)

    return application
