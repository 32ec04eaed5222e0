"""Tests for the communicators, driven against small raw ASGI applications."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator as AsgirefCommunicator

from django_realtime.testing import (
    ApplicationCommunicator,
    HttpCommunicator,
    WebsocketCommunicator,
)

Scope = dict[str, Any]
Message = dict[str, Any]


class Boom(Exception):
    """Raised by the test applications on request."""


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """Accept with the first offered subprotocol, echo frames, obey commands."""
    assert scope["type"] == "websocket"
    message = await receive()
    assert message["type"] == "websocket.connect"
    protocols = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": protocols[0] if protocols else None,
            "headers": [(b"x-echo", b"yes")],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "close":
            await send({"type": "websocket.close", "code": 4000})
        elif text == "crash":
            raise Boom("asked to crash")
        elif text == "scope":
            await send(
                {"type": "websocket.send", "text": repr(scope.get("user", None))}
            )
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def refusing_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close", "code": 4003})


async def crash_on_connect_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    raise Boom("refused to start")


async def silent_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()


async def ignores_disconnect_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()


async def http_app(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    request = await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    summary = f"{scope['method']} {scope['path']} {scope['query_string']!r} "
    await send(
        {"type": "http.response.body", "body": summary.encode(), "more_body": True}
    )
    await send({"type": "http.response.body", "body": request["body"]})
    disconnect = await receive()
    if scope["path"] == "/fail-after-response/":
        raise Boom(f"failed after responding, then got {disconnect['type']}")


# -- scope ------------------------------------------------------------------


def test_websocket_scope_is_what_a_server_would_build() -> None:
    communicator = WebsocketCommunicator(
        echo_app,
        "/chat/caf%C3%A9/?room=1&x=%20",
        headers=[(b"Origin", b"http://testserver"), ("Cookie", "a=b")],
        subprotocols=["v2", "v1"],
        spec_version="2.4",
    )

    assert communicator.scope == {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/chat/café/",
        "raw_path": b"/chat/caf%C3%A9/",
        "query_string": b"room=1&x=%20",
        "root_path": "",
        "headers": [(b"origin", b"http://testserver"), (b"cookie", b"a=b")],
        "client": ("127.0.0.1", 0),
        "server": ("testserver", 80),
        "subprotocols": ["v2", "v1"],
    }


def test_http_scope_uppercases_method_and_splits_query() -> None:
    communicator = HttpCommunicator(http_app, "post", "/items/?page=2")

    assert communicator.scope["method"] == "POST"
    assert communicator.scope["path"] == "/items/"
    assert communicator.scope["query_string"] == b"page=2"
    assert communicator.scope["scheme"] == "http"


def test_path_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="Expected the path as a str, got bytes"):
        WebsocketCommunicator(echo_app, b"/")  # type: ignore[arg-type]


def test_http_body_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="Expected body as bytes, got str"):
        HttpCommunicator(http_app, "POST", "/", body="text")  # type: ignore[arg-type]


def test_application_communicator_is_asgirefs_with_the_same_api() -> None:
    assert issubclass(ApplicationCommunicator, AsgirefCommunicator)
    assert issubclass(WebsocketCommunicator, ApplicationCommunicator)


# -- WebSocket --------------------------------------------------------------


async def test_connect_returns_accepted_and_the_chosen_subprotocol() -> None:
    communicator = WebsocketCommunicator(echo_app, "/", subprotocols=["v2", "v1"])

    assert await communicator.connect() == (True, "v2")
    assert communicator.response_headers == [(b"x-echo", b"yes")]
    await communicator.disconnect()


async def test_connect_returns_refused_and_the_close_code() -> None:
    communicator = WebsocketCommunicator(refusing_app, "/")

    assert await communicator.connect() == (False, 4003)


async def test_connect_reraises_the_applications_exception() -> None:
    communicator = WebsocketCommunicator(crash_on_connect_app, "/")

    with pytest.raises(Boom, match="refused to start"):
        await communicator.connect()


async def test_connect_says_the_application_returned_without_answering() -> None:
    communicator = WebsocketCommunicator(silent_app, "/")

    with pytest.raises(AssertionError, match="returned without sending"):
        await communicator.connect()


async def test_scope_changes_before_connect_reach_the_application() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    communicator.scope["user"] = "alice"
    await communicator.connect()

    await communicator.send_to(text_data="scope")

    assert await communicator.receive_from() == "'alice'"
    await communicator.disconnect()


async def test_text_and_binary_frames_round_trip() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()

    await communicator.send_to(text_data="hello")
    assert await communicator.receive_from() == "hello"
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert await communicator.receive_from() == b"\x00\x01"
    await communicator.send_to(text_data="")
    assert await communicator.receive_from() == ""
    await communicator.disconnect()


async def test_json_round_trips() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()

    await communicator.send_json_to({"n": [1, 2], "s": "é"})

    assert await communicator.receive_json_from() == {"n": [1, 2], "s": "é"}
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "Expected exactly one of text_data and bytes_data"),
        ({"text_data": "a", "bytes_data": b"a"}, "Expected exactly one"),
        ({"text_data": b"a"}, "Expected text_data as a str, got bytes"),
        ({"bytes_data": "a"}, "Expected bytes_data as bytes, got str"),
    ],
)
async def test_send_to_rejects_wrong_arguments(
    kwargs: dict[str, Any], expected: str
) -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()

    with pytest.raises(TypeError, match=expected):
        await communicator.send_to(**kwargs)
    await communicator.disconnect()


async def test_receive_from_says_the_application_closed_instead() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(text_data="close")

    with pytest.raises(
        AssertionError, match=r"Expected a 'websocket.send', got .*4000"
    ):
        await communicator.receive_from()
    await communicator.disconnect()


async def test_receive_json_from_rejects_a_binary_frame() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(bytes_data=b"{}")

    with pytest.raises(AssertionError, match=re.escape("got a binary frame b'{}'")):
        await communicator.receive_json_from()
    await communicator.disconnect()


async def test_receive_json_from_rejects_text_that_is_not_json() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(text_data="not json")

    with pytest.raises(AssertionError, match="holding JSON, got 'not json'"):
        await communicator.receive_json_from()
    await communicator.disconnect()


async def test_receive_from_reraises_a_crash_at_once_not_after_the_timeout() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(text_data="crash")

    # The receive timeout is long; the outer bound proves the crash is
    # reported as it happens.
    async with asyncio.timeout(5):
        with pytest.raises(Boom, match="asked to crash"):
            await communicator.receive_from(timeout=60)


async def test_send_to_reraises_an_earlier_crash() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(text_data="crash")
    with pytest.raises(Boom):
        await communicator.receive_from()

    with pytest.raises(Boom):
        await communicator.send_to(text_data="again")


async def test_receive_from_times_out_and_says_what_it_waited_for() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()

    with pytest.raises(TimeoutError, match=r"Expected a message .* within 0.05 s"):
        await communicator.receive_from(timeout=0.05)
    with pytest.raises(RuntimeError, match="it was cancelled"):
        await communicator.receive_from()


async def test_receive_nothing_is_true_while_the_application_is_silent() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()

    assert await communicator.receive_nothing(timeout=0.05) is True
    await communicator.disconnect()


async def test_receive_nothing_is_false_and_keeps_the_message() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(text_data="kept")

    assert await communicator.receive_nothing(timeout=1) is False
    assert await communicator.receive_from() == "kept"
    await communicator.disconnect()


async def test_receive_nothing_reraises_a_crash() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()
    await communicator.send_to(text_data="crash")

    with pytest.raises(Boom):
        await communicator.receive_nothing(timeout=1)


async def test_disconnect_waits_for_the_application_to_end() -> None:
    communicator = WebsocketCommunicator(echo_app, "/")
    await communicator.connect()

    await communicator.disconnect(code=1006)

    assert communicator.future.done()
    assert communicator.future.exception() is None


async def test_disconnect_times_out_when_the_application_ignores_it() -> None:
    communicator = WebsocketCommunicator(ignores_disconnect_app, "/")
    await communicator.connect()

    with pytest.raises(TimeoutError):
        await communicator.disconnect(timeout=0.05)
    assert communicator.future.cancelled()


# -- HTTP -------------------------------------------------------------------


async def test_get_response_joins_the_body_chunks() -> None:
    communicator = HttpCommunicator(http_app, "PUT", "/items/?a=1", body=b"payload")

    response = await communicator.get_response()

    assert response == {
        "status": 201,
        "headers": [(b"content-type", b"text/plain")],
        "body": b"PUT /items/ b'a=1' payload",
    }


async def test_get_response_reraises_an_error_raised_after_responding() -> None:
    communicator = HttpCommunicator(http_app, "GET", "/fail-after-response/")

    with pytest.raises(Boom, match=r"then got http\.disconnect"):
        await communicator.get_response()


async def test_get_response_says_what_arrived_instead_of_the_start() -> None:
    async def wrong_app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.body", "body": b"early"})

    communicator = HttpCommunicator(wrong_app, "GET", "/")

    with pytest.raises(AssertionError, match=r"Expected 'http\.response\.start', got"):
        await communicator.get_response()


async def test_get_response_says_what_arrived_instead_of_the_body() -> None:
    async def wrong_app(scope: Scope, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.start", "status": 200})

    communicator = HttpCommunicator(wrong_app, "GET", "/")

    with pytest.raises(AssertionError, match=r"Expected 'http\.response\.body', got"):
        await communicator.get_response()
