"""Routing never fails on a path, a scope type or a channel name it is given.

Whatever a client puts in its request line, :class:`URLRouter` either hands
the connection to a route, with the converters' values in
``scope["url_route"]``, or refuses it as documented: a WebSocket handshake
is closed with 1008 (HTTP 403) and an HTTP request gets a 404, with one
warning each. Scopes without a path, unknown scope types and unknown
channel names raise :exc:`RouteNotFound`, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import (
    Resolver404,
    URLPattern,
    URLResolver,
    include,
    path,
    re_path,
)
from django.urls.resolvers import RegexPattern
from hypothesis import event, given, settings, strategies as st

from django_realtime.exceptions import RouteNotFound
from django_realtime.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter

pytestmark = pytest.mark.timeout(60)

Message = dict[str, Any]


class Recorder:
    """An ASGI application that remembers the scopes it was called with."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scopes: list[Message] = []

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        self.scopes.append(scope)


ROOM = Recorder("room")
USER = Recorder("user")
FILES = Recorder("files")
TOKEN = Recorder("token")
REGEX = Recorder("regex")
INNER = Recorder("inner")
ADMIN = Recorder("admin")
ROOT = Recorder("root")
APPS = [ROOM, USER, FILES, TOKEN, REGEX, INNER, ADMIN, ROOT]


def _routes(nest: Callable[[list[URLPattern]], Any]) -> list[URLPattern | URLResolver]:
    """Return the routes of the tests, nesting with ``nest``."""
    return [
        path("", ROOT),
        path("ws/rooms/<slug:room>/", ROOM),
        path("ws/users/<int:pk>/", USER, kwargs={"role": "user"}),
        path("ws/files/<path:name>", FILES),
        path("ws/tokens/<uuid:token>/", TOKEN),
        re_path(r"^ws/re/(?P<word>\w+)/(\d{1,3})/$", REGEX),
        path(
            "ws/org/<str:org>/",
            nest([path("chat/<int:n>/", INNER, kwargs={"org": "inner"})]),
            kwargs={"nested": True},
        ),
        # Reached only by falling through the nested router above.
        path("ws/org/<str:org>/<slug:page>/", ADMIN),
    ]


ROUTER = URLRouter(_routes(URLRouter))
# The same routes for Django's own resolver, which nests with include().
DJANGO = URLResolver(RegexPattern(r"^/"), _routes(include))

# Every character, surrogates and controls included: a server may hand the
# application whatever percent-decoding produced.
any_char = st.characters(exclude_categories=())
segments = st.one_of(
    st.text(any_char, max_size=12),
    st.sampled_from(["ws", "rooms", "users", "files", "tokens", "re", "org", "chat"]),
    st.integers(-5, 10**30).map(str),
    st.uuids().map(str),
    st.sampled_from(["", ".", "..", "%00", "%ff", "\x00", "\ud800", "é", " "]),
)
templates = st.sampled_from(
    [
        "/ws/rooms/{}/",
        "/ws/users/{}/",
        "/ws/files/{}",
        "/ws/tokens/{}/",
        "/ws/re/{}/{}/",
        "/ws/org/{}/chat/{}/",
        "/ws/org/{}/chat/{}",
        "/ws/org/{}/{}/",
        "{}/ws/users/{}/",
    ]
)
paths = st.one_of(
    st.text(any_char, max_size=80),
    st.lists(segments, max_size=7).map(lambda parts: "/" + "/".join(parts) + "/"),
    st.tuples(templates, segments, segments).map(
        lambda t: t[0].format(*t[1:]) if t[0].count("{}") == 2 else t[0].format(t[1])
    ),
)


async def _route(
    router: Any, scope: Message, first: Message | None
) -> tuple[list[Message], Recorder | None]:
    for app in APPS:
        app.scopes.clear()
    sent: list[Message] = []
    inbox = [first] if first is not None else []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(router(scope, receive, send), 5)
    called = [app for app in APPS if app.scopes]
    assert len(called) <= 1
    return sent, called[0] if called else None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def logged() -> Iterator[list[logging.LogRecord]]:
    """Collect what django_realtime logs in the block (caplog spans examples)."""
    handler = _Records()
    logger = logging.getLogger("django_realtime")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _check_route(app: Recorder, scope: Message) -> None:
    """Check that the converters' values have their documented types."""
    kwargs = scope["url_route"]["kwargs"]
    if app is ROOM:
        assert kwargs["room"]
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in kwargs["room"])
    elif app is USER:
        assert type(kwargs["pk"]) is int
        assert kwargs["pk"] >= 0
    elif app is FILES:
        assert kwargs["name"]
    elif app is TOKEN:
        assert isinstance(kwargs["token"], uuid.UUID)
    elif app is INNER:
        assert kwargs["org"] == "inner"
        assert kwargs["nested"] is True
        assert type(kwargs["n"]) is int
    elif app is ADMIN:
        assert "/" not in kwargs["org"]
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in kwargs["page"])
    elif app is REGEX:
        # As in Django: with named groups, unnamed ones are not passed.
        assert kwargs["word"]
        assert scope["url_route"]["args"] == ()
    assert scope["path_remaining"] == ""


@settings(max_examples=400, deadline=None)
@given(path=paths, root_path=st.sampled_from(["", "/prefix"]))
def test_a_websocket_path_is_routed_or_refused_with_1008(
    path: str, root_path: str
) -> None:
    scope = {"type": "websocket", "path": root_path + path, "root_path": root_path}
    with logged() as records:
        sent, app = asyncio.run(_route(ROUTER, scope, {"type": "websocket.connect"}))
    event(app.name if app else "refused")
    if app is not None:
        assert sent == []
        _check_route(app, app.scopes[0])
        return
    assert sent == [{"type": "websocket.close", "code": 1008}]
    [record] = records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None


@settings(max_examples=400, deadline=None)
@given(path=paths)
def test_a_path_goes_where_djangos_resolver_sends_it(path: str) -> None:
    stripped = path.lstrip("/")
    if "//" in stripped:
        # Each router ignores the leading slashes of what is left (as
        # Channels' does); Django's resolver matches them.
        return
    scope = {"type": "websocket", "path": path}
    _, app = asyncio.run(_route(ROUTER, scope, {"type": "websocket.connect"}))
    try:
        match = DJANGO.resolve("/" + stripped)
    except Resolver404:
        assert app is None
        return
    assert app is match.func
    assert app.scopes[0]["url_route"] == {"args": match.args, "kwargs": match.kwargs}


@settings(max_examples=200, deadline=None)
@given(path=paths)
def test_an_http_path_is_routed_or_answered_with_404(path: str) -> None:
    sent, app = asyncio.run(_route(ROUTER, {"type": "http", "path": path}, None))
    if app is not None:
        _check_route(app, app.scopes[0])
        return
    assert [message["type"] for message in sent] == [
        "http.response.start",
        "http.response.body",
    ]
    assert sent[0]["status"] == 404


@settings(max_examples=100, deadline=None)
@given(path=paths, kind=st.text(max_size=10))
def test_other_scope_types_are_routed_or_raise_route_not_found(
    path: str, kind: str
) -> None:
    scope: Message = {"type": kind, "path": path}
    try:
        asyncio.run(_route(ROUTER, scope, None))
    except RouteNotFound:
        assert kind not in ("websocket", "http")


@settings(max_examples=100, deadline=None)
@given(kind=st.text(max_size=12))
def test_protocol_type_router_routes_or_raises_route_not_found(kind: str) -> None:
    router = ProtocolTypeRouter({"websocket": ROOM, "http": USER})
    scope: Message = {"type": kind}
    lifespan = [{"type": "lifespan.shutdown"}] if kind == "lifespan" else []
    first = lifespan[0] if lifespan else None
    try:
        sent, app = asyncio.run(_route(router, scope, first))
    except RouteNotFound:
        assert kind not in ("websocket", "http", "lifespan")
        return
    if kind == "lifespan":
        assert sent == [{"type": "lifespan.shutdown.complete"}]
    else:
        assert app is (ROOM if kind == "websocket" else USER)


@settings(max_examples=100, deadline=None)
@given(channel=st.text(any_char, max_size=30))
def test_channel_name_router_routes_or_raises_route_not_found(channel: str) -> None:
    router = ChannelNameRouter({"thumbnails": ROOM, "emails": USER})
    scope = {"type": "channel", "channel": channel}
    if channel not in ("thumbnails", "emails"):
        with pytest.raises(RouteNotFound, match=re.escape(repr(channel))):
            asyncio.run(_route(router, scope, None))
        return
    _, app = asyncio.run(_route(router, scope, None))
    assert app is (ROOM if channel == "thumbnails" else USER)
