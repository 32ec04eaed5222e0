"""The suite's Channels application: the twin of ``realtime_app``, line for line.

Same routes and consumers as ``realtime_app``, written against Channels' API.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.channels_settings")
django.setup()

from typing import Any  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.exceptions import DenyConnection  # noqa: E402
from channels.generic.websocket import (  # noqa: E402
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "bench"
# --echo-layer none: the echo consumers take no channel layer (no channel
# name, no layer inbox per connection), as a pure echo service would.
ECHO_LAYER = None if os.environ.get("BENCH_ECHO_LAYER") == "none" else "default"


class AsyncEcho(AsyncWebsocketConsumer):
    channel_layer_alias = ECHO_LAYER

    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data)


class SyncEcho(WebsocketConsumer):
    channel_layer_alias = ECHO_LAYER

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=text_data)


class WhoAmI(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            raise DenyConnection
        await self.accept()
        await self.send(text_data=user.get_username())


class Member(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_message(self, event: dict[str, Any]):
        await self.send(text_data=event["text"])


class Publisher(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(
            GROUP, {"type": "bench.message", "text": text_data}
        )


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/echo/async/", AsyncEcho.as_asgi()),
                path("ws/echo/sync/", SyncEcho.as_asgi()),
                path("ws/auth/", AuthMiddlewareStack(WhoAmI.as_asgi())),
                path("ws/fanout/", Member.as_asgi()),
                path("ws/publish/", Publisher.as_asgi()),
            ]
        )
    }
)
