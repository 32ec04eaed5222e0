"""Real-time Django: WebSocket consumers, routing, channel layers.

The most used names are re-exported here and imported on first access, so
``import django_realtime`` imports no models and reads no settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_LAZY = {
    "AsyncConsumer": "django_realtime.consumers",
    "SyncConsumer": "django_realtime.consumers",
    "WebsocketConsumer": "django_realtime.consumers",
    "AsyncWebsocketConsumer": "django_realtime.consumers",
    "JsonWebsocketConsumer": "django_realtime.consumers",
    "AsyncJsonWebsocketConsumer": "django_realtime.consumers",
    "AsyncHttpConsumer": "django_realtime.consumers",
    "ProtocolTypeRouter": "django_realtime.routing",
    "URLRouter": "django_realtime.routing",
    "ChannelNameRouter": "django_realtime.routing",
    "get_default_application": "django_realtime.routing",
    "get_channel_layer": "django_realtime.layers",
    "channel_layers": "django_realtime.layers",
    "DenyConnection": "django_realtime.exceptions",
    "StopConsumer": "django_realtime.exceptions",
    "RealtimeError": "django_realtime.exceptions",
    "send_to_group": "django_realtime.delivery",
    "asend_to_group": "django_realtime.delivery",
    "send_to_channel": "django_realtime.delivery",
    "asend_to_channel": "django_realtime.delivery",
}

__all__ = [
    "AsyncConsumer",
    "AsyncHttpConsumer",
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "ChannelNameRouter",
    "DenyConnection",
    "JsonWebsocketConsumer",
    "ProtocolTypeRouter",
    "RealtimeError",
    "StopConsumer",
    "SyncConsumer",
    "URLRouter",
    "WebsocketConsumer",
    "__version__",
    "asend_to_channel",
    "asend_to_group",
    "channel_layers",
    "get_channel_layer",
    "get_default_application",
    "send_to_channel",
    "send_to_group",
]

if TYPE_CHECKING:
    from django_realtime.consumers import (
        AsyncConsumer,
        AsyncHttpConsumer,
        AsyncJsonWebsocketConsumer,
        AsyncWebsocketConsumer,
        JsonWebsocketConsumer,
        SyncConsumer,
        WebsocketConsumer,
    )
    from django_realtime.delivery import (
        asend_to_channel,
        asend_to_group,
        send_to_channel,
        send_to_group,
    )
    from django_realtime.exceptions import DenyConnection, RealtimeError, StopConsumer
    from django_realtime.layers import channel_layers, get_channel_layer
    from django_realtime.routing import (
        ChannelNameRouter,
        ProtocolTypeRouter,
        URLRouter,
        get_default_application,
    )


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(
            f"module 'django_realtime' has no attribute {name!r}"
        ) from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
