"""The application the HTTP transports' tests serve, over WebSocket and HTTP.

Streams named ``open.*`` may be read by anyone, others by nobody. The
request ``publish`` publishes ``data["data"]`` to ``data["stream"]``; the
request ``publish_then_fail`` publishes, then fails (so nothing is
published). ``/login/<name>/`` puts a name in the session.
"""

from __future__ import annotations

from typing import Any

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402

from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import StreamConsumer, apublish  # noqa: E402
from django_realtime.streams.http import stream_http_urls  # noqa: E402


class Open(StreamConsumer):
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("open.")

    async def request_publish(self, data: Any) -> Any:
        await apublish(data["stream"], data["data"])
        return {"ok": True}

    async def request_publish_then_fail(self, data: Any) -> Any:
        await apublish(data["stream"], data["data"])
        raise RuntimeError("failed on purpose")

    async def request_whoami(self, data: Any) -> Any:
        return self.scope["session"].get("name")


def login(request: HttpRequest, name: str) -> HttpResponse:
    request.session["name"] = name
    return HttpResponse(name)


urlpatterns = [
    path("login/<str:name>/", login),
    path("realtime/open/", include(stream_http_urls(Open, heartbeat=1.0))),
]

application = ProtocolTypeRouter(
    {"http": http, "websocket": URLRouter([path("ws/open/", Open.as_asgi())])}  # type: ignore[arg-type]
)
