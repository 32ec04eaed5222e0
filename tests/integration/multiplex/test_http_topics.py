"""A multiplexer's topics over SSE and long-polling, through Django's ASGI handler.

Stream topics are served per request, as a StreamConsumer of their own
under ``<prefix><topic>/``; topics of other consumers are refused with
``needs_socket``, in the way each transport's client reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.urls import include, path

from django_realtime.multiplex import multiplex, multiplex_http_urls
from django_realtime.streams import StreamConsumer, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore

from .consumers import Echo

pytestmark = pytest.mark.timeout(20)


class RoomStreams(StreamConsumer):
    """The streams of one room; says which topic and room served a request."""

    channel_layer_alias = None
    prefix = "room"

    async def authorize_stream(self, stream: str) -> bool:
        room = self.scope["url_route"]["kwargs"]["room"]
        return stream == f"{self.prefix}.{room}"

    async def request_where(self, data: Any) -> Any:
        return {"topic": self.scope["topic"], **self.scope["url_route"]["kwargs"]}


MUX = multiplex(
    {
        "echo": Echo.as_asgi(),
        "room/<slug:room>": RoomStreams.as_asgi(),
        "hall/<slug:room>": RoomStreams.as_asgi(prefix="hall"),
    }
)

urlpatterns = [path("rt/", include(multiplex_http_urls(MUX)))]


@pytest.fixture
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    with override_settings(ROOT_URLCONF=__name__):
        yield fresh
    set_stream_store(old)


class Browser:
    """Requests to Django's ASGI handler, with the cookies and ids a browser keeps."""

    def __init__(self) -> None:
        self.app = get_asgi_application()
        self.cookies: dict[str, str] = {}
        self.client = ""
        self.csrf = ""

    def scope(self, method: str, url: str, query: str = "") -> dict[str, Any]:
        headers = {
            "host": "testserver",
            "cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
        }
        if method == "POST":
            headers.update(
                {
                    "content-type": "application/json",
                    "x-csrftoken": self.csrf,
                    "x-realtime-client": self.client,
                }
            )
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": url,
            "raw_path": url.encode(),
            "query_string": query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }

    async def request(
        self, method: str, url: str, query: str = "", body: bytes = b""
    ) -> tuple[int, bytes]:
        app = ApplicationCommunicator(self.app, self.scope(method, url, query))
        await app.send_input({"type": "http.request", "body": body})
        start = await app.receive_output(10)
        for name, value in start["headers"]:
            if name.lower() == b"set-cookie":
                for morsel in SimpleCookie(value.decode()).values():
                    self.cookies[morsel.key] = morsel.value
        content = b""
        while True:
            message = await app.receive_output(10)
            content += message.get("body", b"")
            if not message.get("more_body"):
                break
        await app.wait(10)
        return start["status"], content

    async def json(
        self, method: str, url: str, query: str = "", frame: Any = None
    ) -> tuple[int, Any]:
        body = b"" if frame is None else json.dumps(frame).encode()
        status, content = await self.request(method, url, query, body)
        answer = json.loads(content)
        if status == 200:
            self.client = answer["client"]
            self.csrf = answer.get("csrf", self.csrf)
        return status, answer


async def test_a_stream_topic_is_served_over_post_and_poll_under_its_name(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    status, _ = await browser.json("GET", "/rt/room/lobby/poll", "timeout=0")
    assert status == 200
    subscribe = {"kind": "subscribe", "id": 1, "stream": "room.lobby"}
    status, answer = await browser.json("POST", "/rt/room/lobby/", frame=subscribe)
    assert status == 200, answer
    (subscribed,) = answer["frames"]
    assert subscribed["kind"] == "subscribed"
    where = {"kind": "request", "id": 2, "type": "where"}
    _, answer = await browser.json("POST", "/rt/room/lobby/", frame=where)
    assert answer["frames"][0]["data"] == {"topic": "room/lobby", "room": "lobby"}

    await store.publish("room.lobby", '{"n": 1}')
    positions = json.dumps({"room.lobby": [subscribed["epoch"], subscribed["offset"]]})
    query = urlencode({"client": browser.client, "positions": positions})
    status, answer = await browser.json("GET", "/rt/room/lobby/poll", query)
    assert status == 200
    assert [(f["kind"], f["data"]) for f in answer["frames"]] == [
        ("publication", {"n": 1})
    ]


async def test_a_stream_topic_authorizes_by_its_own_route_values(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    await browser.json("GET", "/rt/hall/east/poll", "timeout=0")
    for stream, kind in (("hall.east", "subscribed"), ("room.east", "error")):
        frame = {"kind": "subscribe", "id": 1, "stream": stream}
        _, answer = await browser.json("POST", "/rt/hall/east/", frame=frame)
        assert answer["frames"][0]["kind"] == kind


async def test_a_stream_topic_streams_over_server_sent_events(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    await browser.json("GET", "/rt/room/a/poll", "timeout=0")
    frame = {"kind": "subscribe", "id": 1, "stream": "room.a"}
    _, answer = await browser.json("POST", "/rt/room/a/", frame=frame)
    subscribed = answer["frames"][0]
    positions = json.dumps({"room.a": [subscribed["epoch"], subscribed["offset"]]})
    query = urlencode({"client": browser.client, "positions": positions})
    events = ApplicationCommunicator(
        browser.app, browser.scope("GET", "/rt/room/a/events", query)
    )
    await events.send_input({"type": "http.request", "body": b""})
    assert (await events.receive_output(10))["status"] == 200
    assert b"event: client" in (await events.receive_output(10))["body"]
    await store.publish("room.a", '{"n": 7}')
    assert b'"data":{"n": 7}' in (await events.receive_output(10))["body"]
    await events.send_input({"type": "http.disconnect"})
    await events.wait(10)


@pytest.mark.parametrize("url", ["/rt/echo/", "/rt/echo/poll"])
async def test_a_topic_of_another_consumer_is_refused_as_needing_a_socket(
    store: MemoryHistoryStore, url: str
) -> None:
    browser = Browser()
    method = "POST" if url.endswith("/") else "GET"
    status, answer = await browser.json(method, url, frame={"kind": "ping"})
    assert status == 409
    assert (answer["error"], answer["close_code"]) == ("needs_socket", 1008)
    assert "Echo" in answer["message"]
    assert "WebSocket" in answer["message"]


async def test_over_server_sent_events_the_refusal_is_an_error_frame_then_a_close(
    store: MemoryHistoryStore,
) -> None:
    status, content = await Browser().request("GET", "/rt/echo/events")
    assert status == 200
    error, close = [
        event.split("\n") for event in content.decode().split("\n\n") if event
    ]
    frame = json.loads(error[0].removeprefix("data: "))
    assert (frame["kind"], frame["code"], frame["id"]) == (
        "error",
        "needs_socket",
        None,
    )
    assert close == ["event: close", 'data: {"code": 1008}']


async def test_a_name_no_route_matches_is_an_unknown_topic(
    store: MemoryHistoryStore,
) -> None:
    status, answer = await Browser().json("GET", "/rt/nowhere/poll")
    assert (status, answer["error"]) == (404, "unknown_topic")


def test_arguments_the_http_transports_cannot_give_fail_when_the_urls_load() -> None:
    class Named(RoomStreams):
        def __init__(self, *, label: str) -> None:
            super().__init__()
            self.label = label

    with pytest.raises(ImproperlyConfigured, match="label"):
        multiplex_http_urls(multiplex({"named": Named.as_asgi(label="x")}))
