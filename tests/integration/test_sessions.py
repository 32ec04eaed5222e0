"""Cookie and session middleware: parsing, loading at connect, saving on answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.urls import path

from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.middleware.handoff import take_session_cookie
from django_realtime.sessions import (
    CookieMiddleware,
    SessionMiddleware,
    SessionMiddlewareStack,
    cookie_settable,
    hand_over_session,
    send_session_frames,
)
from django_realtime.testing import HttpCommunicator

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.django_db(transaction=True),
]


async def scope_seen_by(app_factory: Any, headers: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await HttpCommunicator(app_factory(app), "GET", "/", headers=headers).get_response()
    return seen


async def test_cookie_headers_are_parsed_into_the_scope() -> None:
    scope = await scope_seen_by(
        CookieMiddleware, [(b"cookie", b"a=1; b=two"), (b"cookie", b"c=3")]
    )

    assert scope["cookies"] == {"a": "1", "b": "two", "c": "3"}


async def test_session_middleware_without_cookies_names_the_fix() -> None:
    with pytest.raises(ValueError, match="CookieMiddleware"):
        await scope_seen_by(SessionMiddleware, [])


async def test_lifespan_passes_through_the_stack_unchanged() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    await SessionMiddlewareStack(app)({"type": "lifespan"}, None, None)

    assert seen == [{"type": "lifespan"}]


class SessionReader(AsyncWebsocketConsumer):
    channel_layer_alias = None
    set_before_accept = False

    async def connect(self) -> None:
        if self.set_before_accept:
            self.scope["session"]["greeting"] = "hello"
        await self.accept()

    async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
        # Plain dict access in the event loop: with the db engine this would
        # raise SynchronousOnlyOperation if the session were not loaded yet.
        await self.send(text_data=str(self.scope["session"].get("colour")))


async def stored_session(**data: Any) -> str:
    session = SessionStore()
    await session.aupdate(data)
    await session.asave()
    assert session.session_key is not None
    return session.session_key


async def test_the_session_is_loaded_at_connect_for_async_handlers(
    websocket_communicator: Any,
) -> None:
    key = await stored_session(colour="blue")
    communicator = websocket_communicator(
        SessionMiddlewareStack(SessionReader.as_asgi()),
        "/ws/",
        headers=[(b"cookie", f"sessionid={key}".encode())],
    )
    assert (await communicator.connect(timeout=5))[0]

    await communicator.send_to(text_data="?")

    assert await communicator.receive_from(timeout=5) == "blue"
    assert communicator.response_headers == []


async def test_a_session_changed_before_accept_is_saved_and_its_cookie_sent(
    websocket_communicator: Any,
) -> None:
    app = SessionMiddlewareStack(SessionReader.as_asgi(set_before_accept=True))
    communicator = websocket_communicator(app, "/ws/")

    assert (await communicator.connect(timeout=5))[0]

    [(name, cookie)] = communicator.response_headers
    assert name == b"set-cookie"
    key = cookie.split(b";")[0].removeprefix(b"sessionid=").decode()
    assert await SessionStore(key).aget("greeting") == "hello"


async def test_save_every_request_refreshes_the_cookie_on_connect(
    websocket_communicator: Any, settings: Any
) -> None:
    settings.SESSION_SAVE_EVERY_REQUEST = True
    key = await stored_session(colour="red")
    communicator = websocket_communicator(
        SessionMiddlewareStack(SessionReader.as_asgi()),
        "/ws/",
        headers=[(b"cookie", f"sessionid={key}".encode())],
    )

    assert (await communicator.connect(timeout=5))[0]

    [(_, cookie)] = communicator.response_headers
    assert cookie.startswith(f"sessionid={key};".encode())


async def test_an_http_response_carries_the_cookie_of_a_changed_session() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await scope["session"].aset("seen", True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = await HttpCommunicator(
        SessionMiddlewareStack(app), "GET", "/"
    ).get_response(timeout=5)

    [cookie] = [v for n, v in response["headers"] if n == b"set-cookie"]
    key = cookie.split(b";")[0].removeprefix(b"sessionid=").decode()
    assert await SessionStore(key).aget("seen") is True


async def test_a_refused_handshake_saves_nothing(websocket_communicator: Any) -> None:
    class Refuser(AsyncWebsocketConsumer):
        channel_layer_alias = None

        async def connect(self) -> None:
            self.scope["session"]["x"] = 1
            await self.close()

    communicator = websocket_communicator(SessionMiddlewareStack(Refuser.as_asgi()))

    assert not (await communicator.connect(timeout=5))[0]
    from django.contrib.sessions.models import Session

    assert await Session.objects.acount() == 0


urlpatterns = [path("realtime/session/", take_session_cookie, name="realtime-session")]


class HandingOver(AsyncWebsocketConsumer):
    """Save a new session before accepting, and hand its cookie over."""

    channel_layer_alias = None
    frames = True

    async def connect(self) -> None:
        if self.frames:
            send_session_frames(self.scope)
        session = self.scope["session"]
        await session.aset("colour", "green")
        await session.asave()
        self.returned = await hand_over_session(self.scope, session)
        await self.accept()
        if self.returned is not None:
            await self.send(text_data=json.dumps(self.returned))


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("frames", [True, False], ids=["middleware", "consumer"])
async def test_a_session_frame_made_before_accept_arrives_right_after_it(
    websocket_communicator: Any, frames: bool
) -> None:
    app = SessionMiddlewareStack(HandingOver.as_asgi(frames=frames))
    communicator = websocket_communicator(app, "/ws/", spec_version="2.0")

    assert (await communicator.connect(timeout=5))[0]
    frame = json.loads(await communicator.receive_from(timeout=5))

    assert frame == {
        "kind": "session",
        "token": frame["token"],
        "url": "/realtime/session/",
    }
    assert await SessionStore(frame["token"]).aget("django_realtime.session_handoff")


async def test_hand_over_session_needs_a_saved_session() -> None:
    with pytest.raises(ValueError, match="asave"):
        await hand_over_session({"type": "websocket"}, SessionStore())


def test_send_session_frames_ignores_a_scope_without_the_session_middleware() -> None:
    scope: dict[str, Any] = {"type": "websocket"}

    send_session_frames(scope)

    assert scope == {"type": "websocket"}


@pytest.mark.parametrize(
    ("asgi", "settable"),
    [
        ({"version": "3.0"}, False),
        ({"version": "3.0", "spec_version": "2.0"}, False),
        ({"version": "3.0", "spec_version": "2.1"}, True),
        ({"version": "3.0", "spec_version": "2.4"}, True),
        ({"version": "3.0", "spec_version": "two"}, False),
    ],
)
async def test_a_cookie_is_settable_before_accept_when_the_server_sends_its_headers(
    websocket_communicator: Any, asgi: dict[str, str], settable: bool
) -> None:
    seen: list[bool] = []

    class Probe(AsyncWebsocketConsumer):
        channel_layer_alias = None

        async def connect(self) -> None:
            seen.append(cookie_settable(self.scope))
            await self.accept()

        async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
            seen.append(cookie_settable(self.scope))
            await self.send(text_data="seen")

    communicator = websocket_communicator(SessionMiddlewareStack(Probe.as_asgi()))
    communicator.scope["asgi"] = asgi
    assert (await communicator.connect(timeout=5))[0]

    await communicator.send_to(text_data="?")

    assert await communicator.receive_from(timeout=5) == "seen"
    assert seen == [settable, False]
