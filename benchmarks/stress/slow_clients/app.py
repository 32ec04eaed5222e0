"""The slow-client run's application (benchmarks.stress.slow_clients).

Two routes, one per way a broadcast reaches connections:

``ws/streams/``
    A :class:`~django_realtime.streams.StreamConsumer` that lets anyone
    subscribe to ``bench.*``. Its queue limits and slow-client policy come
    from the environment: ``BENCH_SLOW_POLICY`` (``catch_up`` or
    ``close``), ``BENCH_SLOW_MAX_QUEUED``, ``BENCH_SLOW_MAX_QUEUED_BYTES``.
``ws/group/``
    An :class:`~django_realtime.consumers.AsyncJsonWebsocketConsumer` that
    joins the group ``bench`` and sends each ``bench.message`` it gets from
    the channel layer to its client with ``send_json``.
"""

import os

import django

os.environ.setdefault(
    "DJANGO_SETTINGS_MODULE", "benchmarks.stress.slow_clients.settings"
)
django.setup()

from typing import Any  # noqa: E402

from django.urls import path  # noqa: E402

from django_realtime.consumers import AsyncJsonWebsocketConsumer  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import StreamConsumer  # noqa: E402

GROUP = "bench"
STREAM_PREFIX = "bench."


class BroadcastStream(StreamConsumer):
    # Streams do not go through the channel layer: no inbox per connection.
    channel_layer_alias = None
    max_queued = int(os.environ.get("BENCH_SLOW_MAX_QUEUED", "1000"))
    max_queued_bytes = int(os.environ.get("BENCH_SLOW_MAX_QUEUED_BYTES", "4194304"))
    slow_client_policy = os.environ.get("BENCH_SLOW_POLICY", "catch_up")

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith(STREAM_PREFIX)


class GroupMember(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["data"])


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/streams/", BroadcastStream.as_asgi()),
                path("ws/group/", GroupMember.as_asgi()),
            ]
        )
    }
)
