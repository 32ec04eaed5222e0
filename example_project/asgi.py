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

from django_realtime.auth import AuthMiddlewareStack  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.security import AllowedHostsOriginValidator  # noqa: E402
from example_project.chat import routing  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sockets only from pages of this site (an Origin in ALLOWED_HOSTS),
        # with the session and user of the browser's cookie in the scope.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(routing.websocket_urlpatterns))
        ),
    }
)
