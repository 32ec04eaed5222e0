"""The ASGI application (and URLconf) of the drain tests' server processes.

With ``DRAIN_TEST_HANDLE_SIGTERM=1`` in the environment it opts into
draining on SIGTERM the way ``asgi.py`` does, with ``drain.handle_sigterm()``;
the other way is ``"SIGNAL": True`` in ``DRAIN_TEST_OPTIONS``.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integration.drain.settings")
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

from django_realtime.ops import drain  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from tests.integration.drain.consumers import Echo, Streams  # noqa: E402

if os.environ.get("DRAIN_TEST_HANDLE_SIGTERM") == "1":
    drain.handle_sigterm()

urlpatterns = [path("ready/", drain.ready)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter(
            [path("ws/echo/", Echo.as_asgi()), path("ws/streams/", Streams.as_asgi())]
        ),
    }
)
