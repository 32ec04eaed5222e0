"""The stream application the daphne tests serve: anyone may read any stream."""

from __future__ import annotations

from typing import Any

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from django.urls import path  # noqa: E402

from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import StreamConsumer  # noqa: E402


class Open(StreamConsumer):
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return True

    async def request_echo(self, data: Any) -> Any:
        return data


application = ProtocolTypeRouter(
    {"http": http, "websocket": URLRouter([path("ws/streams/", Open.as_asgi())])}
)
