"""The ASGI application (and URLconf) of the drain tests' server processes."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.drain.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

from django_realtime.ops import drain  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from tests.drain.consumers import Echo, Streams  # noqa: E402

urlpatterns = [path("ready/", drain.ready)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter(
            [path("ws/echo/", Echo.as_asgi()), path("ws/streams/", Streams.as_asgi())]
        ),
    }
)
