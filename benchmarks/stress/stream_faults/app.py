"""The streams fault-injection run's application (benchmarks.stress.stream_faults).

A :class:`~django_realtime.streams.StreamConsumer` that lets anyone
subscribe to the run's streams, ``bench.<n>``, and nothing else, over a
WebSocket (``ws/streams/``) and over SSE and long-polling (under
``rt/streams/``, :func:`~django_realtime.streams.http.stream_http_urls`).
History lives in Redis (``benchmarks.stress.stream_faults.settings``), shared by
every server process of the run.
"""

import os

import django

os.environ.setdefault(
    "DJANGO_SETTINGS_MODULE", "benchmarks.stress.stream_faults.settings"
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import include, path  # noqa: E402

from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import StreamConsumer  # noqa: E402
from django_realtime.streams.http import stream_http_urls  # noqa: E402

STREAM_PREFIX = "bench."


class BenchStreams(StreamConsumer):
    # Streams do not go through the channel layer: no inbox per connection.
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith(STREAM_PREFIX)


urlpatterns = [path("rt/streams/", include(stream_http_urls(BenchStreams)))]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/streams/", BenchStreams.as_asgi())]),
    }
)
