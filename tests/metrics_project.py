"""A server for tests/integration/test_metrics.py: an echo and metrics on."""

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="django_realtime-metrics-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django_realtime"],
        DATABASES={},
        ROOT_URLCONF=__name__,
        REALTIME={"METRICS": True},
    )
    django.setup()

from typing import Any

from django.core.asgi import get_asgi_application
from django.urls import path

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.ops.metrics import metrics_view
from django_realtime.routing import ProtocolTypeRouter, URLRouter


class Echo(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


urlpatterns = [path("metrics", metrics_view)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/echo/", Echo.as_asgi())]),
    }
)
