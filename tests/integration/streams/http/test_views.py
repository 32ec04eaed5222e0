"""The HTTP transports in process, through Django's own ASGI handler.

What a server keeps for a client: nothing once its request has ended. A
request handler runs as over a WebSocket: sync ones on the pool, and what a
failed one published is dropped.
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
from django.test import override_settings
from django.urls import include, path

from django_realtime import DenyConnection
from django_realtime.ops import drain
from django_realtime.streams import StreamConsumer, set_stream_store
from django_realtime.streams.http import stream_http_urls
from django_realtime.streams.stores import MemoryHistoryStore

pytestmark = pytest.mark.timeout(20)


class Chat(StreamConsumer):
    channel_layer_alias = None

    async def authorize_stream(self, stream: str) -> bool:
        return stream.startswith("room.")

    def request_whoami(self, data: Any) -> Any:
        # A plain function: run on the sync pool, as over a WebSocket.
        return {"user": str(self.scope["user"]), "data": data}


class Gated(StreamConsumer):
    """Refuses room "deny" at the handshake, and closes room "gone" with 4003."""

    channel_layer_alias = None

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        if self.room == "deny":
            raise DenyConnection
        await self.accept()
        if self.room == "gone":
            await self.close(4003)

    async def authorize_stream(self, stream: str) -> bool:
        return stream == f"room.{self.room}"


urlpatterns = [
    path("rt/", include(stream_http_urls(Chat))),
    path("gated/<str:room>/", include(stream_http_urls(Gated))),
]


@pytest.fixture
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    with override_settings(ROOT_URLCONF=__name__):
        yield fresh
    set_stream_store(old)


class Browser:
    """Speak ASGI to Django's handler, keeping cookies, as a browser would."""

    def __init__(self) -> None:
        self.app = get_asgi_application()
        self.cookies: dict[str, str] = {}
        self.client = ""
        self.csrf = ""

    def _scope(
        self, method: str, path: str, query: str, headers: dict[str, str]
    ) -> Any:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        sent = {"cookie": cookie, "host": "testserver", **headers}
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }

    def _keep_cookies(self, start: dict[str, Any]) -> None:
        for name, value in start["headers"]:
            if name.lower() == b"set-cookie":
                for morsel in SimpleCookie(value.decode()).values():
                    self.cookies[morsel.key] = morsel.value

    async def request(
        self, method: str, path: str, query: str = "", body: bytes = b""
    ) -> tuple[int, Any]:
        headers = {}
        if method == "POST":
            headers = {
                "content-type": "application/json",
                "x-csrftoken": self.csrf,
                "x-realtime-client": self.client,
            }
        app = ApplicationCommunicator(
            self.app, self._scope(method, path, query, headers)
        )
        await app.send_input({"type": "http.request", "body": body})
        start = await app.receive_output(10)
        self._keep_cookies(start)
        chunks = b""
        while True:
            message = await app.receive_output(10)
            chunks += message.get("body", b"")
            if not message.get("more_body"):
                break
        await app.wait(10)
        content = json.loads(chunks)
        if start["status"] == 200:
            self.client = content["client"]
            self.csrf = content.get("csrf", self.csrf)
        return start["status"], content

    async def start(self) -> None:
        status, _ = await self.request("GET", "/rt/poll", "timeout=0")
        assert status == 200

    async def post(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        status, content = await self.request(
            "POST", "/rt/", body=json.dumps(frame).encode()
        )
        assert status == 200, content
        frames: list[dict[str, Any]] = content["frames"]
        return frames


async def test_an_event_stream_the_client_leaves_leaves_no_listener_behind(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    await browser.start()
    (subscribed,) = await browser.post(
        {"kind": "subscribe", "id": 1, "stream": "room.a"}
    )
    assert subscribed["kind"] == "subscribed"
    assert store.hub.streams == []  # the POST's session ended with it
    positions = json.dumps({"room.a": [subscribed["epoch"], subscribed["offset"]]})
    query = urlencode({"client": browser.client, "positions": positions})
    events = ApplicationCommunicator(
        browser.app, browser._scope("GET", "/rt/events", query, {})
    )
    await events.send_input({"type": "http.request", "body": b""})
    start = await events.receive_output(10)
    assert start["status"] == 200
    first = await events.receive_output(10)
    assert b"event: client" in first["body"]
    await store.publish("room.a", '{"n": 1}')
    publication = await events.receive_output(10)
    assert b'"offset":1' in publication["body"]
    assert store.hub.streams == ["room.a"]
    await events.send_input({"type": "http.disconnect"})
    await events.wait(10)
    assert store.hub.streams == []


async def test_a_sync_request_handler_runs_with_the_request_user(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    await browser.start()
    (reply,) = await browser.post(
        {"kind": "request", "id": 5, "type": "whoami", "data": [1]}
    )
    assert reply == {
        "kind": "reply",
        "id": 5,
        "data": {"user": "AnonymousUser", "data": [1]},
    }


async def test_a_poll_returns_what_came_after_the_positions_then_waits(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    await browser.start()
    (subscribed,) = await browser.post(
        {"kind": "subscribe", "id": 1, "stream": "room.b"}
    )
    for n in range(3):
        await store.publish("room.b", json.dumps({"n": n}))
    positions = json.dumps({"room.b": [subscribed["epoch"], 1]})
    query = urlencode(
        {"client": browser.client, "positions": positions, "timeout": "5"}
    )
    status, content = await browser.request("GET", "/rt/poll", query)
    assert status == 200
    assert [f["offset"] for f in content["frames"]] == [2, 3]
    assert store.hub.streams == []


async def test_each_request_runs_connect_with_the_url_route(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    status, _ = await browser.request("GET", "/gated/lobby/poll", "timeout=0")
    assert status == 200
    status, content = await browser.request(
        "POST",
        "/gated/lobby/",
        body=b'{"kind": "subscribe", "id": 1, "stream": "room.lobby"}',
    )
    assert status == 200
    assert content["frames"][0]["kind"] == "subscribed"
    status, content = await browser.request(
        "POST",
        "/gated/lobby/",
        body=b'{"kind": "subscribe", "id": 2, "stream": "room.other"}',
    )
    assert content["frames"][0]["code"] == "forbidden"


@pytest.mark.parametrize(("room", "close_code"), [("deny", 1006), ("gone", 4003)])
async def test_a_connect_that_refuses_refuses_the_request_with_its_close_code(
    store: MemoryHistoryStore, room: str, close_code: int
) -> None:
    browser = Browser()
    status, content = await browser.request("GET", f"/gated/{room}/poll", "timeout=0")
    assert status == 403
    assert content["error"] == "refused"
    assert content["close_code"] == close_code


@pytest.fixture
def accepting() -> Iterator[None]:
    yield
    drain.resume()


async def test_a_drain_ends_event_streams_and_refuses_new_requests(
    store: MemoryHistoryStore, accepting: None
) -> None:
    browser = Browser()
    await browser.start()
    (subscribed,) = await browser.post(
        {"kind": "subscribe", "id": 1, "stream": "room.d"}
    )
    positions = json.dumps({"room.d": [subscribed["epoch"], subscribed["offset"]]})
    query = urlencode({"client": browser.client, "positions": positions})
    events = ApplicationCommunicator(
        browser.app, browser._scope("GET", "/rt/events", query, {})
    )
    await events.send_input({"type": "http.request", "body": b""})
    assert (await events.receive_output(10))["status"] == 200
    await events.receive_output(10)  # the client event
    opened = drain.open_count()
    assert opened >= 1

    report = await drain.drain(batch_size=100, interval=0, deadline=5)

    assert report.closed >= 1
    last = await events.receive_output(10)
    assert b"event: close" in last["body"]
    assert b'"code": 1012' in last["body"]
    end = await events.receive_output(10)
    assert not end.get("more_body")
    await events.wait(10)
    assert store.hub.streams == []
    status, content = await browser.request("GET", "/rt/poll", "timeout=0")
    assert status == 503
    assert (content["error"], content["close_code"]) == ("unavailable", 1012)
