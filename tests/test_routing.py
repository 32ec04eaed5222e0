"""Routing by protocol, path and channel name."""

import logging

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.urls import include, path, re_path

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.exceptions import RouteNotFound
from django_realtime.routing import (
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
    get_default_application,
)
from django_realtime.testing import HttpCommunicator, WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class Route(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self):
        await self.accept()
        route = self.scope["url_route"]
        await self.send(text_data=repr((route["args"], route["kwargs"])))


async def route_of(application, path):
    communicator = WebsocketCommunicator(application, path)
    ok, _ = await communicator.connect()
    assert ok, f"{path} was refused"
    seen = await communicator.receive_from()
    await communicator.disconnect()
    return seen


async def test_path_converters_land_in_url_route():
    router = URLRouter([path("rooms/<int:pk>/<slug:name>/", Route.as_asgi())])
    seen = await route_of(router, "/rooms/7/lobby/")
    assert seen == "((), {'pk': 7, 'name': 'lobby'})"


async def test_re_path_groups_land_in_url_route():
    router = URLRouter(
        [
            re_path(r"^named/(?P<room>\w+)/$", Route.as_asgi()),
            re_path(r"^positional/(\d+)/$", Route.as_asgi()),
        ]
    )
    assert await route_of(router, "/named/abc/") == "((), {'room': 'abc'})"
    assert await route_of(router, "/positional/42/") == "(('42',), {})"


async def test_nested_routers_merge_captured_kwargs():
    inner = URLRouter([path("chat/<str:room>/", Route.as_asgi())])
    outer = URLRouter(
        [
            path("org/<slug:org>/", inner),
            re_path(r"^v(?P<version>\d)/", URLRouter([path("ws/", Route.as_asgi())])),
        ]
    )
    assert (
        await route_of(outer, "/org/acme/chat/lobby/")
        == "((), {'org': 'acme', 'room': 'lobby'})"
    )
    assert await route_of(outer, "/v2/ws/") == "((), {'version': '2'})"


async def test_endpoint_routes_match_the_whole_path():
    router = URLRouter([path("ws/", Route.as_asgi())])
    ok, _ = await WebsocketCommunicator(router, "/ws/extra/").connect()
    assert not ok


async def test_root_path_is_removed_before_matching():
    router = URLRouter([path("ws/", Route.as_asgi())])
    communicator = WebsocketCommunicator(router, "/prefix/ws/")
    communicator.scope["root_path"] = "/prefix"
    ok, _ = await communicator.connect()
    assert ok
    await communicator.disconnect()


async def test_unrouted_websocket_is_refused_with_one_log_line(caplog):
    router = URLRouter([path("ws/", Route.as_asgi())])
    with caplog.at_level(logging.DEBUG):
        ok, _ = await WebsocketCommunicator(router, "/nowhere/").connect()
    assert not ok
    records = [r for r in caplog.records if r.name.startswith("django_realtime")]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "/nowhere/" in records[0].getMessage()
    assert records[0].exc_info is None


async def test_unrouted_http_request_gets_404(caplog):
    router = URLRouter([path("ws/", Route.as_asgi())])
    response = await HttpCommunicator(router, "GET", "/missing/").get_response()
    assert response["status"] == 404


def test_include_is_refused_with_a_hint():
    with pytest.raises(ImproperlyConfigured, match="URLRouter"):
        URLRouter([path("x/", include([]))])


async def test_protocol_type_router_picks_by_scope_type():
    router = ProtocolTypeRouter(
        {"websocket": URLRouter([path("ws/", Route.as_asgi())])}
    )
    assert await route_of(router, "/ws/") == "((), {})"


async def test_protocol_type_router_answers_http_with_404_when_not_routed(caplog):
    router = ProtocolTypeRouter({"websocket": Route.as_asgi()})
    response = await HttpCommunicator(router, "GET", "/probe/").get_response()
    assert response["status"] == 404
    assert response["body"] == b"Not Found"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "Not Found: /probe/ (ProtocolTypeRouter has no 'http' application)"
    ]


async def test_protocol_type_router_refuses_unknown_types():
    router = ProtocolTypeRouter({"websocket": Route.as_asgi()})
    communicator = ApplicationCommunicator(router, {"type": "webtransport"})
    with pytest.raises(RouteNotFound, match="'webtransport'"):
        await communicator.wait(timeout=1)


async def test_protocol_type_router_answers_lifespan_when_not_routed():
    router = ProtocolTypeRouter({"websocket": Route.as_asgi()})
    communicator = ApplicationCommunicator(router, {"type": "lifespan"})
    await communicator.send_input({"type": "lifespan.startup"})
    assert await communicator.receive_output() == {"type": "lifespan.startup.complete"}
    await communicator.send_input({"type": "lifespan.shutdown"})
    assert await communicator.receive_output() == {"type": "lifespan.shutdown.complete"}


async def test_channel_name_router_routes_by_channel():
    received = []

    async def worker(scope, receive, send):
        received.append((scope["channel"], await receive()))

    router = ChannelNameRouter({"thumbnails": worker})
    communicator = ApplicationCommunicator(
        router, {"type": "channel", "channel": "thumbnails"}
    )
    await communicator.send_input({"type": "resize", "id": 1})
    await communicator.wait(timeout=1)
    assert received == [("thumbnails", {"type": "resize", "id": 1})]


async def test_channel_name_router_refuses_unknown_channels():
    router = ChannelNameRouter({"thumbnails": Route.as_asgi()})
    communicator = ApplicationCommunicator(router, {"type": "channel", "channel": "x"})
    with pytest.raises(RouteNotFound, match="'x'"):
        await communicator.wait(timeout=1)


def test_get_default_application_imports_the_setting(settings):
    settings.ASGI_APPLICATION = "tests.test_routing.application"
    assert get_default_application() is application


def test_get_default_application_explains_a_missing_setting(settings):
    del settings.ASGI_APPLICATION
    with pytest.raises(ImproperlyConfigured, match="ASGI_APPLICATION is not set"):
        get_default_application()


def test_get_default_application_explains_an_import_error(settings):
    settings.ASGI_APPLICATION = "tests.nowhere.application"
    with pytest.raises(ImproperlyConfigured, match="Cannot import"):
        get_default_application()


application = URLRouter([path("ws/", Route.as_asgi())])
