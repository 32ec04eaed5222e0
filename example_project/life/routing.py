"""WebSocket routes of life, for ``URLRouter`` in the project's asgi.py."""

from django.urls import path

from django_realtime.middleware.limits import ConnectionLimits
from example_project.life import converters  # noqa: F401  (registers "life_board")
from example_project.life.consumers import CellConsumer, WatchConsumer
from example_project.life.pace import CELL_BURST, CELL_RATE, WATCH_BURST, WATCH_RATE

__all__ = ["websocket_urlpatterns"]

# django-stubs types path()'s view as an HTTP view; URLRouter routes ASGI
# applications. Over its message rate (pace.py), a socket is closed with 4029:
# a cell client paces itself under it, a watcher has nothing to say.
websocket_urlpatterns = [
    path(
        "ws/life/<life_board:board>/cell/<int:x>/<int:y>/",
        ConnectionLimits(  # type: ignore[arg-type]
            CellConsumer.as_asgi(), rate=CELL_RATE, burst=CELL_BURST
        ),
    ),
    path(
        "ws/life/<life_board:board>/watch/",
        ConnectionLimits(  # type: ignore[arg-type]
            WatchConsumer.as_asgi(), rate=WATCH_RATE, burst=WATCH_BURST
        ),
    ),
]
