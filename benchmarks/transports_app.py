"""The transports group's application: one stream consumer over three transports.

``ws/streams/``
    :class:`BenchStreams` over a WebSocket: the subscribers of the
    WebSocket rows, and the publisher of every row (a ``publish`` request
    publishes its data to the stream ``bench.fan``).
``rt/streams/`` (``events``, ``poll``)
    The same consumer over server-sent events and long-polling
    (:func:`~django_realtime.streams.http.stream_http_urls`), as a project
    mounts it: ordinary async Django views behind the session and auth
    middleware (``benchmarks.transports_settings``).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.transports_settings")
django.setup()

from typing import Any  # noqa: E402

from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import include, path  # noqa: E402

from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import StreamConsumer, apublish  # noqa: E402
from django_realtime.streams.http import stream_http_urls  # noqa: E402

STREAM = "bench.fan"
WS_PATH = "/ws/streams/"
HTTP_PREFIX = "/rt/streams/"


class BenchStreams(StreamConsumer):
    # Streams do not go through the channel layer: no inbox per connection.
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return stream == STREAM

    async def request_publish(self, data: Any) -> None:
        await apublish(STREAM, data)


urlpatterns = [path(HTTP_PREFIX[1:], include(stream_http_urls(BenchStreams)))]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path(WS_PATH[1:], BenchStreams.as_asgi())]),
    }
)
