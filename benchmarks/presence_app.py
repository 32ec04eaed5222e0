"""The presence benchmark's server application, on the Redis store.

Read from the environment: ``BENCH_PRESENCE_PREFIX`` (the Redis keys) and
``REDIS_URL``. The user is the ``user`` query parameter; every stream
``room.*`` has presence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.asgi import get_asgi_application

settings.REALTIME = {
    **(getattr(settings, "REALTIME", None) or {}),
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {
            "url": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
            "prefix": os.environ.get("BENCH_PRESENCE_PREFIX", "bench-presence"),
        },
    },
}

http = get_asgi_application()

from django.urls import path  # noqa: E402

from django_realtime.presence import PresenceConsumer  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402


@dataclass
class _User:
    pk: str
    is_authenticated: bool = True

    def get_username(self) -> str:
        return self.pk


class Room(PresenceConsumer):
    channel_layer_alias = None
    max_queued = 100_000
    max_queued_bytes = 256 * 1024 * 1024

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.scope["user"] = _User(query.get("user", ["nobody"])[0])
        await self.accept()

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("room.")

    def tracks_presence(self, stream: str) -> bool:
        return True

    def presence_member(self, stream: str) -> tuple[str, Any] | None:
        user = self.scope["user"]
        return user.pk, {"username": user.pk}


application = ProtocolTypeRouter(
    {"http": http, "websocket": URLRouter([path("ws/", Room.as_asgi())])}
)
