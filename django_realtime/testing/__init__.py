"""Test tools: communicators, a live daphne server, pytest fixtures.

Names are imported on first access, so loading the pytest plugin (which
imports this package in every pytest run) imports neither Django's test
framework nor any settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ApplicationCommunicator": "django_realtime.testing.communicators",
    "HttpCommunicator": "django_realtime.testing.communicators",
    "WebsocketCommunicator": "django_realtime.testing.communicators",
    "LiveServer": "django_realtime.testing.live_server",
    "LiveServerError": "django_realtime.testing.live_server",
    "RealtimeLiveServerTestCase": "django_realtime.testing.live_server",
    "ChannelsLiveServerTestCase": "django_realtime.testing.live_server",
    "RequestFailed": "django_realtime.testing.streams",
    "StreamClient": "django_realtime.testing.streams",
    "drop_redis_connections": "django_realtime.testing.streams",
    "flush_streams": "django_realtime.testing.streams",
}

__all__ = [
    "ApplicationCommunicator",
    "ChannelsLiveServerTestCase",
    "HttpCommunicator",
    "LiveServer",
    "LiveServerError",
    "RealtimeLiveServerTestCase",
    "RequestFailed",
    "StreamClient",
    "WebsocketCommunicator",
    "drop_redis_connections",
    "flush_streams",
]

if TYPE_CHECKING:
    from django_realtime.testing.communicators import (
        ApplicationCommunicator,
        HttpCommunicator,
        WebsocketCommunicator,
    )
    from django_realtime.testing.live_server import (
        ChannelsLiveServerTestCase,
        LiveServer,
        LiveServerError,
        RealtimeLiveServerTestCase,
    )
    from django_realtime.testing.streams import (
        RequestFailed,
        StreamClient,
        drop_redis_connections,
        flush_streams,
    )


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(
            f"module 'django_realtime.testing' has no attribute {name!r}"
        ) from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
