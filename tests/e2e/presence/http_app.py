"""A presence application over WebSocket and the HTTP transports, on Redis.

The settings are :mod:`tests.e2e.presence.http_settings`. Rooms
(``room.*``) have presence; the member is the user named by the ``user``
query parameter of the WebSocket, or by the ``<user>`` of the HTTP
transports' URL ``/realtime/<user>/``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from django.urls import include, path  # noqa: E402

from django_realtime.presence import PresenceConsumer  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams.http import stream_http_urls  # noqa: E402


class Room(PresenceConsumer):
    channel_layer_alias = None

    async def connect(self) -> None:
        route = self.scope.get("url_route", {}).get("kwargs", {})
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.user = route.get("user") or query.get("user", ["nobody"])[0]
        await self.accept()

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("room.")

    def tracks_presence(self, stream: str) -> bool:
        return True

    def presence_member(self, stream: str) -> tuple[str, Any] | None:
        return self.user, {"username": self.user}


urlpatterns = [
    path("realtime/<str:user>/", include(stream_http_urls(Room, heartbeat=0.5))),
]

application = ProtocolTypeRouter(
    {"http": http, "websocket": URLRouter([path("ws/", Room.as_asgi())])}  # type: ignore[arg-type]
)
