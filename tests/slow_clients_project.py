"""A server for tests/integration/test_daphne_flow.py: a stream and a group, on Redis.

Configured from the environment the test sets: ``SLOW_REDIS`` (the Redis
URL), ``SLOW_PREFIX`` (the run's key prefix; the layer's is
``<prefix>-layer``), ``SLOW_CAPACITY`` (the layer's capacity per channel),
``SLOW_POLICY`` (the stream's slow-client policy) and ``SLOW_MAX_QUEUED``
(its queue, in publications).

``ws/streams/``
    A :class:`~django_realtime.streams.StreamConsumer` anyone may subscribe
    to ``slow.*`` with.
``ws/group/``
    An :class:`~django_realtime.consumers.AsyncJsonWebsocketConsumer` in the
    group ``slow``; each ``slow.message`` goes to its client as JSON.
"""

import os

import django
from django.conf import settings

REDIS = os.environ.get("SLOW_REDIS", "redis://127.0.0.1:6379")
PREFIX = os.environ.get("SLOW_PREFIX", "slow-test")
GROUP = "slow"

if not settings.configured:
    settings.configure(
        SECRET_KEY="django_realtime-slow-clients-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django_realtime"],
        DATABASES={},
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [REDIS],
                    "prefix": f"{PREFIX}-layer",
                    "capacity": int(os.environ.get("SLOW_CAPACITY", "100")),
                },
            }
        },
        REALTIME={
            "STREAM_STORE": {
                "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
                "OPTIONS": {"url": REDIS, "prefix": PREFIX},
            },
            "STREAM_HISTORY": {
                "*": {"MAX_COUNT": 1000, "MAX_BYTES": None, "MAX_AGE": None}
            },
        },
        # The test reads the slow-client warnings from the server's output.
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "plain"}
            },
            "root": {"handlers": ["console"], "level": "WARNING"},
        },
    )
    django.setup()

from typing import Any  # noqa: E402

from django.urls import path  # noqa: E402

from django_realtime.consumers import AsyncJsonWebsocketConsumer  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import StreamConsumer  # noqa: E402


class Broadcast(StreamConsumer):
    channel_layer_alias = None
    max_queued = int(os.environ.get("SLOW_MAX_QUEUED", "20"))
    slow_client_policy = os.environ.get("SLOW_POLICY", "catch_up")

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("slow.")


class Member(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def slow_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["data"])


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                # django-stubs types path() for views; URLRouter takes ASGI apps.
                path("ws/streams/", Broadcast.as_asgi()),  # type: ignore[arg-type]
                path("ws/group/", Member.as_asgi()),  # type: ignore[arg-type]
            ]
        )
    }
)
