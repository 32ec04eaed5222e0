"""The multiplexing browser test's server: a page and one multiplexed socket.

``GET /``
    A page that imports ``realtime.js`` by its import map and keeps what
    its topics receive in ``window.m``.
``POST /publish/?stream=S&n=N``
    Publish ``{"n": N}`` to ``S`` from the server process.
``ws /ws/``
    A :class:`~django_realtime.multiplex.Multiplexer`: ``echo`` (text and
    binary), ``room/<room>`` (only ``room/open`` is accepted; others are
    closed with 4403) and ``feed`` (a StreamConsumer).
``/realtime/mux/<topic>/...``
    The same multiplexer's stream topics over SSE and long-polling
    (``multiplex_http_urls``), through Django's ASGI handler.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.template.backends.django import DjangoTemplates  # noqa: E402
from django.urls import include, path  # noqa: E402

from django_realtime.consumers import AsyncWebsocketConsumer  # noqa: E402
from django_realtime.multiplex import multiplex, multiplex_http_urls  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import (  # noqa: E402
    StreamConsumer,
    apublish,
    set_stream_store,
)
from django_realtime.streams.stores import (  # noqa: E402
    MemoryHistoryStore,
    PolicyTable,
)

PAGE = """{% load realtime %}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>multiplexing test page</title>
{% realtime_client %}
<script type="module">
import * as realtime from "django_realtime";
const sockets = [];
const m = { realtime, sockets, offline: false, got: {}, closes: {}, opens: {},
            errors: {}, publications: [], states: [], pongs: 0 };
m.connect = (options = {}) => {
  m.mux = realtime.multiplex("/ws/", {
    ...options,
    backoff: { initial: 50, max: 200 },
    createSocket: (url) => {
      // Offline: a port where nothing listens, as an unreachable server.
      const socket = new WebSocket(m.offline ? "ws://127.0.0.1:9/" : url);
      if (!m.offline) sockets.push(socket);
      socket.addEventListener("message", (event) => {
        if (event.data === '{"kind":"pong"}') m.pongs += 1;
      });
      return socket;
    },
  });
  m.mux.onState((event) => m.states.push(event.state));
};
m.open = (name) => {
  m.got[name] = [];
  m.opens[name] = 0;
  return m.mux.topic(name, {
    onOpen: () => (m.opens[name] += 1),
    onMessage: (data) => m.got[name].push(
      typeof data === "string" ? data : Array.from(new Uint8Array(data))),
    onClose: (info) => (m.closes[name] = info),
    onError: (error) => (m.errors[name] = error.code),
  });
};
m.drop = () => sockets.at(-1).close();
window.m = m;
</script>
</head>
<body><p>multiplexing test page</p></body>
</html>
"""


class Echo(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data is not None:
            await self.send(text_data=f"echo {text_data}")
        else:
            await self.send(bytes_data=bytes_data)


class Room(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        room = self.scope["url_route"]["kwargs"]["room"]
        if room != "open":
            await self.close(4403, f"not a member of {room}")
            return
        await self.accept()


class Feed(StreamConsumer):
    async def authorize_stream(self, stream: str) -> bool:
        return True

    async def request_echo(self, data: Any) -> Any:
        return data


def _page() -> bytes:
    engine = DjangoTemplates(
        {"NAME": "browser", "DIRS": [], "APP_DIRS": False, "OPTIONS": {}}
    )
    return engine.from_string(PAGE).render({}).encode()


async def _respond(send: Any, status: int, body: bytes, kind: str) -> None:
    headers = [(b"content-type", kind.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def http_application(scope: Any, receive: Any, send: Any) -> None:
    """Serve the page and the publish hook."""
    if scope["path"] == "/":
        await _respond(send, 200, _page(), "text/html; charset=utf-8")
    elif scope["path"].startswith("/realtime/"):
        await django_application(scope, receive, send)
    elif scope["path"] == "/publish/" and scope["method"] == "POST":
        query = parse_qs(scope["query_string"].decode())
        n = int(query["n"][0])
        await apublish(query["stream"][0], {"n": n}, immediately=True)
        await _respond(send, 200, b"published", "text/plain")
    else:
        await _respond(send, 404, b"not found", "text/plain")


set_stream_store(MemoryHistoryStore(PolicyTable({"*": {"max_count": 100}})))

MUX = multiplex(
    {
        "echo": Echo.as_asgi(),
        "room/<slug:room>": Room.as_asgi(),
        "feed": Feed.as_asgi(),
    }
)
# This process serves these tests only: its Django views are this module's.
urlpatterns = [path("realtime/mux/", include(multiplex_http_urls(MUX)))]
settings.ROOT_URLCONF = __name__
django_application = get_asgi_application()

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": URLRouter([path("ws/", MUX)]),
    }
)
