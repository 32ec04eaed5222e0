"""The multiplexing benchmark's application: one echo consumer, two ways.

``ws/echo/``
    The echo consumer on a socket of its own.
``ws/mux/``
    A multiplexer whose topics ``echo`` and ``echo/<n>`` are served by the
    same consumer class (up to 10,000 topics per socket, for the memory
    measure).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.realtime_settings")
django.setup()

from django.urls import path  # noqa: E402

from django_realtime.consumers import AsyncWebsocketConsumer  # noqa: E402
from django_realtime.multiplex import multiplex  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402


class AsyncEcho(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data)


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/echo/", AsyncEcho.as_asgi()),
                path(
                    "ws/mux/",
                    multiplex(
                        {
                            "echo": AsyncEcho.as_asgi(),
                            "echo/<int:n>": AsyncEcho.as_asgi(),
                        },
                        max_topics=10_000,
                    ),
                ),
            ]
        )
    }
)
