"""WebSocket routes of life, for ``URLRouter`` in the project's asgi.py."""

from django.urls import path

from example_project.life import converters  # noqa: F401  (registers "life_board")
from example_project.life.consumers import CellConsumer, WatchConsumer

__all__ = ["websocket_urlpatterns"]

# django-stubs types path()'s view as an HTTP view; URLRouter routes ASGI
# applications.
websocket_urlpatterns = [
    path(
        "ws/life/<life_board:board>/cell/<int:x>/<int:y>/",
        CellConsumer.as_asgi(),  # type: ignore[arg-type]
    ),
    path(
        "ws/life/<life_board:board>/watch/",
        WatchConsumer.as_asgi(),  # type: ignore[arg-type]
    ),
]
