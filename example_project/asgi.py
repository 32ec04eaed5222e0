"""The ASGI application of the example project: HTTP and WebSocket.

Serve it with ``python manage.py runserver`` in development, or with any
ASGI server in production::

    daphne example_project.asgi:application
    uvicorn example_project.asgi:application
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

# Set Django up before anything imports models, consumers or routes.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from django_realtime.auth import AuthMiddlewareStack  # noqa: E402
from django_realtime.middleware.limits import ConnectionLimits  # noqa: E402
from django_realtime.routing import (  # noqa: E402
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
)
from django_realtime.security import AllowedHostsOriginValidator  # noqa: E402
from example_project.c10k import routing as c10k_routing  # noqa: E402
from example_project.chat import routing as chat_routing  # noqa: E402
from example_project.jobs import routing as jobs_routing  # noqa: E402
from example_project.life import routing as life_routing  # noqa: E402

websocket_urlpatterns = (
    chat_routing.websocket_urlpatterns
    + jobs_routing.websocket_urlpatterns
    + c10k_routing.websocket_urlpatterns
    + life_routing.websocket_urlpatterns
)

application = ProtocolTypeRouter(
    {
        # The chat's event streams and long-polls count as connections too.
        "http": ConnectionLimits(
            django_asgi_app,
            max_connections=settings.MAX_CONNECTIONS,  # type: ignore[misc]
            http_paths=["/realtime/"],
        ),
        # Sockets only from pages of this site (an Origin in ALLOWED_HOSTS),
        # with the session and user of the browser's cookie in the scope.
        # Then at most MAX_CONNECTIONS sockets per process (more are refused
        # with 1013, "try again later"), 10 s to finish a handshake; the
        # chat and the jobs page limit each socket's message rate too.
        "websocket": AllowedHostsOriginValidator(
            ConnectionLimits(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
                max_connections=settings.MAX_CONNECTIONS,  # type: ignore[misc]
                handshake_timeout=10,
            )
        ),
        # Background jobs: manage.py runworker jobs
        "channel": ChannelNameRouter(jobs_routing.channel_routes),
    }
)
