"""The application the HTTP transports' tests serve, over WebSocket and HTTP.

Streams named ``open.*`` may be read by anyone, others by nobody. The
request ``publish`` publishes ``data["data"]`` to ``data["stream"]``; the
request ``publish_then_fail`` publishes, then fails (so nothing is
published). ``/realtime/limited/`` serves the same consumer with a POST
rate of 1 a second (bursts of 2); :data:`limited_application` allows one
waiting GET per client address. ``/login/<name>/`` puts a name in the
session. ``/page/`` is a page for the browser tests: it imports
``realtime.js`` (served from the package's static folder at
``/realtime.js``) and offers ``start(options)``,
which connects, follows ``open.chat`` into ``window.got`` and records
state events in ``window.states``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402

from django_realtime.middleware.limits import ConnectionLimits  # noqa: E402
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


REALTIME_JS = (
    Path(__file__).resolve().parents[3]
    / "django_realtime/static/django_realtime/realtime.js"
)

PAGE = """<!doctype html>
<title>streams over HTTP</title>
<script type="module">
import { connect } from "/realtime.js";
window.start = (options = {}) => {
  window.states = [];
  window.got = [];
  const rt = (window.rt = connect("/ws/open/", {
    httpUrl: "/realtime/open/",
    backoff: { initial: 100, max: 1000 },
    ...options,
  }));
  rt.onState((event) => states.push(event));
  const sub = rt.subscribe("open.chat");
  sub.on("*", (data, publication) => got.push(publication));
  return sub.ready;
};
window.say = (data) =>
  rt.request("publish", { stream: "open.chat", data }, { timeout: 20000 });
window.ready = true;
</script>
"""


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


def realtime_js(request: HttpRequest) -> HttpResponse:
    return HttpResponse(REALTIME_JS.read_bytes(), content_type="text/javascript")


class Limited(Open):
    pass


def login(request: HttpRequest, name: str) -> HttpResponse:
    request.session["name"] = name
    return HttpResponse(name)


urlpatterns = [
    path("login/<str:name>/", login),
    path("page/", page),
    path("realtime.js", realtime_js),
    path("realtime/open/", include(stream_http_urls(Open, heartbeat=1.0))),
    path("realtime/limited/", include(stream_http_urls(Limited, rate=1, burst=2))),
]

application = ProtocolTypeRouter(
    {"http": http, "websocket": URLRouter([path("ws/open/", Open.as_asgi())])}  # type: ignore[arg-type]
)

# One waiting GET (event stream or long-poll) per client address.
limited_application = ConnectionLimits(
    application, http_paths=["/realtime/"], max_connections_per_address=1
)
