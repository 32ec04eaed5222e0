"""The fuzz run's application (benchmarks.stress.fuzz): small consumers to attack.

Routes:

``ws/plain/``
    An async echo of text and bytes, with the default ``max_message_size``.
``ws/small/``
    The same echo with ``max_message_size`` of 64 KiB, under every server's
    own limit, so that the consumer's 1009 is seen on daphne too.
``ws/json/``, ``ws/json-sync/``
    JSON echoes, async and sync.
``ws/streams/``
    A :class:`~django_realtime.streams.StreamConsumer` that allows the
    streams ``fuzz.*``, answers the request ``echo`` with its data and fails
    on the request ``fail``.
``ws/fail/``
    A JSON consumer whose handler reads ``content["message"]``: ``{}`` makes
    it raise. It is in the group ``fuzz-fail``.
``ws/unknown/``
    A JSON consumer that, sent ``{"layer": "<type>"}``, sends itself a layer
    message of that type, which it has no handler for.
``ws/room/<room>/``
    Joins the group ``room.<room>``: a room that makes an invalid group name
    fails the handshake.

Settings are made here (no settings module): an in-memory channel layer and
stream store, and django_realtime's log lines on stderr.
"""

from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django_realtime-fuzz-not-secret",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        INSTALLED_APPS=["django_realtime"],
        DATABASES={},
        CHANNEL_LAYERS={
            "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
        },
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "plain"}
            },
            "loggers": {
                "django_realtime": {
                    "handlers": ["console"],
                    "level": "INFO",
                    "propagate": False,
                }
            },
        },
    )
    django.setup()

from django.urls import path

from django_realtime.consumers import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
)
from django_realtime.routing import ProtocolTypeRouter, URLRouter
from django_realtime.streams import StreamConsumer

#: max_message_size of ws/small/.
SMALL_LIMIT = 64 * 1024


class PlainEcho(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class SmallEcho(PlainEcho):
    max_message_size = SMALL_LIMIT


class JsonEcho(AsyncJsonWebsocketConsumer):
    channel_layer_alias = None

    async def receive_json(self, content: Any) -> None:
        await self.send_json(content)


class SyncJsonEcho(JsonWebsocketConsumer):
    channel_layer_alias = None

    def receive_json(self, content: Any) -> None:
        self.send_json(content)


class FuzzStreams(StreamConsumer):
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("fuzz.")

    async def request_echo(self, data: Any) -> Any:
        return data

    async def request_fail(self, data: Any) -> Any:
        raise RuntimeError("fuzz: the request handler failed")


class Failing(AsyncJsonWebsocketConsumer):
    groups = ["fuzz-fail"]

    async def receive_json(self, content: Any) -> None:
        await self.send_json({"message": content["message"]})


class UnknownType(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any) -> None:
        if isinstance(content, dict) and isinstance(content.get("layer"), str):
            await self.channel_layer.send(self.channel_name, {"type": content["layer"]})
        await self.send_json(content)


class Room(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(f"room.{room}", self.channel_name)
        await self.accept()


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/plain/", PlainEcho.as_asgi()),
                path("ws/small/", SmallEcho.as_asgi()),
                path("ws/json/", JsonEcho.as_asgi()),
                path("ws/json-sync/", SyncJsonEcho.as_asgi()),
                path("ws/streams/", FuzzStreams.as_asgi()),
                path("ws/fail/", Failing.as_asgi()),
                path("ws/unknown/", UnknownType.as_asgi()),
                path("ws/room/<str:room>/", Room.as_asgi()),
            ]
        )
    }
)
