"""A server-side application for tests/integration/consumers/test_closing_sends.py.

``ws/close-then-send/``: sent ``"held"``, closes with 4001 and then sends
in the same handler; sent ``"layer"``, closes with 4001 and sends itself a
layer message whose handler sends a frame: both sends come after the close.
The application has no ``http`` route.
"""

from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="django_realtime-closing-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django_realtime"],
        DATABASES={},
        CHANNEL_LAYERS={
            "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
        },
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler"}},
            "loggers": {"django_realtime": {"handlers": ["console"], "level": "DEBUG"}},
        },
    )
    django.setup()

from django.urls import path

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.routing import ProtocolTypeRouter, URLRouter


class CloseThenSend(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data == "held":
            await self.close(4001)
            await self.send("after the close, held")
        else:
            await self.close(4001)
            await self.channel_layer.send(self.channel_name, {"type": "late"})

    async def late(self, message: dict[str, Any]) -> None:
        await self.send("after the close, from the layer")


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/close-then-send/", CloseThenSend.as_asgi())])}
)
