"""The ASGI application (and URLconf) of the ops console's server processes.

The admin (with its static files, for a page that looks as it does in a
project), an echo WebSocket and the stream consumer of the drain tests,
behind the session and auth middleware.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.ops_console.settings")
django.setup()

from django.contrib import admin  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

from django_realtime.auth import AuthMiddlewareStack  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from tests.integration.drain.consumers import Echo, Streams  # noqa: E402

urlpatterns = [path("admin/", admin.site.urls)]

application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(get_asgi_application()),
        "websocket": AuthMiddlewareStack(
            URLRouter(
                [
                    path("ws/echo/", Echo.as_asgi()),
                    path("ws/streams/", Streams.as_asgi()),
                ]
            )
        ),
    }
)
