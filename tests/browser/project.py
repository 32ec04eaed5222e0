"""The browser tests' server: a StreamConsumer, a test page and a publish hook.

The live server runs this module's :data:`application` in a child process
(daphne, with static files served, so the page loads ``realtime.js`` from
where a project would). What it serves:

``GET /``
    The test page: the ``{% realtime_client %}`` import map and
    ``page.js`` (next to this module), which imports the client by that
    name and sets up the helpers the tests drive with ``page.evaluate``.
``POST /publish/?stream=S&count=N&start=K``
    Publish ``{"type": "tick", "n": K..K+N-1}`` to ``S``, in order, from the
    server process (the in-memory store lives there).
``ws /ws/feed/``
    :class:`Feed`, a :class:`~django_realtime.streams.StreamConsumer`.
``ws /ws/refuse/``
    :class:`Refuse`, which refuses the handshake.
``ws /ws/session/``
    :class:`SessionFeed` behind ``AuthMiddlewareStack``: logs users in over
    the socket (before the accept with ``?login=<username>``).
``/visit/``, ``/whoami/``, ``/realtime/session/``
    Django views (:mod:`tests.browser.urls`), through Django's ASGI handler;
    they need the server to use the test database.

The history store is :func:`tests.browser.stores.make_store`'s: in memory,
or in Redis when the environment says so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import django

# Under daphne (the live server) Django is set up already; uvicorn does not,
# and the auth modules below need the app registry.
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.template.backends.django import DjangoTemplates  # noqa: E402
from django.urls import path  # noqa: E402

from django_realtime.auth import AuthMiddlewareStack, login  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import (  # noqa: E402
    RequestError,
    StreamConsumer,
    apublish,
    get_stream_store,
    set_stream_store,
)
from tests.browser.stores import make_store  # noqa: E402

HERE = Path(__file__).resolve().parent

PAGE = """{% load realtime %}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>realtime.js test page</title>
{% realtime_client %}
<script type="module" src="/page.js"></script>
</head>
<body><p id="status">realtime.js test page</p></body>
</html>
"""


class Feed(StreamConsumer):
    """Streams for everyone but ``secret.*``, and requests the tests call."""

    async def authorize_stream(self, stream: str) -> bool:
        return not stream.startswith("secret.")

    async def request_echo(self, data: Any) -> Any:
        return data

    async def request_refuse(self, data: Any) -> None:
        raise RequestError(data["code"], data["message"])

    async def request_crash(self, data: Any) -> None:
        raise RuntimeError("The browser test asked this handler to fail.")

    async def request_sleep(self, data: Any) -> Any:
        await asyncio.sleep(data["seconds"])
        return data

    async def request_store_name(self, data: Any) -> str:
        """Return the Redis client name of the server's store connections."""
        return str(getattr(get_stream_store(), "client_name", ""))

    async def request_close(self, data: Any) -> None:
        await self.close(data["code"])

    async def request_publish_value(self, data: Any) -> None:
        await apublish(data["stream"], data["value"])

    async def request_publish(self, data: Any) -> None:
        for n in range(data.get("start", 0), data.get("start", 0) + data["count"]):
            await apublish(data["stream"], {"type": data.get("type", "tick"), "n": n})


class Refuse(StreamConsumer):
    """Refuse every handshake, with a 4003 the browser never sees."""

    async def connect(self) -> None:
        await self.close(4003)


class SessionFeed(Feed):
    """Log users in by name (no password: a test server), report the session."""

    async def connect(self) -> None:
        query = parse_qs(self.scope["query_string"].decode())
        if "login" in query:
            await self._login(query["login"][0])
        await self.accept()

    async def _login(self, username: str) -> None:
        user = await get_user_model().objects.aget(username=username)
        await login(self.scope, user)

    async def request_login(self, data: Any) -> str | None:
        await self._login(data)
        key: str | None = self.scope["session"].session_key
        return key

    async def request_session_key(self, data: Any) -> str | None:
        key: str | None = self.scope["session"].session_key
        return key


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
    """Serve the test page, the publish hook and the Django views."""
    if scope["path"] in DJANGO_PATHS:
        await django_application(scope, receive, send)
    elif scope["path"] == "/":
        await _respond(send, 200, _page(), "text/html; charset=utf-8")
    elif scope["path"] == "/page.js":
        body = (HERE / "page.js").read_bytes()
        await _respond(send, 200, body, "text/javascript; charset=utf-8")
    elif scope["path"] == "/publish/" and scope["method"] == "POST":
        query = parse_qs(scope["query_string"].decode())
        stream = query["stream"][0]
        start = int(query.get("start", ["0"])[0])
        count = int(query["count"][0])
        for n in range(start, start + count):
            await apublish(stream, {"type": "tick", "n": n}, immediately=True)
        await _respond(send, 200, b"published", "text/plain")
    else:
        await _respond(send, 404, b"not found", "text/plain")


set_stream_store(make_store())
# This process serves the browser tests only: its Django views are theirs.
settings.ROOT_URLCONF = "tests.browser.urls"
DJANGO_PATHS = frozenset({"/visit/", "/whoami/", "/realtime/session/"})
django_application = get_asgi_application()

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": URLRouter(
            [
                path("ws/feed/", Feed.as_asgi()),
                path("ws/refuse/", Refuse.as_asgi()),
                path("ws/session/", AuthMiddlewareStack(SessionFeed.as_asgi())),
            ]
        ),
    }
)
