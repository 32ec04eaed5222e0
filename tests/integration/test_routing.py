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


async def test_a_path_the_nested_router_does_not_match_goes_on_to_the_next_route():
    chat = URLRouter([path("room/<slug:room>/", Route.as_asgi())])
    outer = URLRouter(
        [
            path("chat/", chat),
            path("chat/admin/", Route.as_asgi(), kwargs={"admin": True}),
            re_path(r"^(?P<rest>.*)$", Route.as_asgi()),
        ]
    )
    assert await route_of(outer, "/chat/room/lobby/") == "((), {'room': 'lobby'})"
    assert await route_of(outer, "/chat/admin/") == "((), {'admin': True})"
    assert await route_of(outer, "/chat/nowhere/") == "((), {'rest': 'chat/nowhere/'})"


async def test_a_path_falls_through_routers_nested_two_deep():
    deep = URLRouter(
        [path("a/", URLRouter([path("b/", URLRouter([path("c/", Route.as_asgi())]))]))]
    )
    outer = URLRouter([path("x/", deep), path("x/a/b/d/", Route.as_asgi())])
    assert await route_of(outer, "/x/a/b/c/") == "((), {})"
    assert await route_of(outer, "/x/a/b/d/") == "((), {})"
    ok, _ = await WebsocketCommunicator(outer, "/x/a/b/e/").connect()
    assert not ok


async def test_an_http_request_falls_through_a_nested_router():
    async def found(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"admin"})

    outer = URLRouter(
        [
            path("chat/", URLRouter([path("room/", Route.as_asgi())])),
            path("chat/admin/", found),
        ]
    )
    response = await HttpCommunicator(outer, "GET", "/chat/admin/").get_response()
    assert (response["status"], response["body"]) == (200, b"admin")


async def test_extra_kwargs_of_path_and_re_path_land_in_url_route():
    router = URLRouter(
        [
            path("ws/", Route.as_asgi(), kwargs={"mode": "ro"}),
            path("rooms/<int:pk>/", Route.as_asgi(), {"mode": "rw"}),
            re_path(r"^re/(?P<word>\w+)/$", Route.as_asgi(), kwargs={"mode": "re"}),
        ]
    )
    assert await route_of(router, "/ws/") == "((), {'mode': 'ro'})"
    assert await route_of(router, "/rooms/7/") == "((), {'pk': 7, 'mode': 'rw'})"
    assert await route_of(router, "/re/abc/") == "((), {'word': 'abc', 'mode': 're'})"


async def test_extra_kwargs_win_over_captured_ones_and_inner_routes_over_outer():
    inner = URLRouter([path("<str:room>/", Route.as_asgi(), kwargs={"level": "inner"})])
    outer = URLRouter(
        [
            path("org/<slug:org>/", inner, kwargs={"level": "outer", "org": "fixed"}),
        ]
    )
    assert (
        await route_of(outer, "/org/acme/lobby/")
        == "((), {'org': 'fixed', 'level': 'inner', 'room': 'lobby'})"
    )


async def test_the_application_gets_what_is_left_of_the_path():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path_remaining"])

    outer = URLRouter(
        [path("ws/", app), re_path(r"^api/", URLRouter([re_path(r"^v1/", app)]))]
    )
    await ApplicationCommunicator(outer, {"type": "http", "path": "/ws/"}).wait(1)
    await ApplicationCommunicator(outer, {"type": "http", "path": "/api/v1/x"}).wait(1)
    assert seen == ["", "x"]


async def test_a_refused_path_is_logged_with_its_control_characters_escaped(caplog):
    router = URLRouter([path("ws/", Route.as_asgi())])
    forged = "/x\nCRITICAL forged line"
    websocket = ApplicationCommunicator(router, {"type": "websocket", "path": forged})
    http = ApplicationCommunicator(router, {"type": "http", "path": forged})
    with caplog.at_level(logging.WARNING):
        await websocket.send_input({"type": "websocket.connect"})
        assert await websocket.receive_output(1) == {
            "type": "websocket.close",
            "code": 1008,
        }
        await http.wait(1)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert all("\n" not in line and "/x\\nCRITICAL" in line for line in lines)


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
    settings.ASGI_APPLICATION = "tests.integration.test_routing.application"
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
