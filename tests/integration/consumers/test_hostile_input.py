"""Bad input from clients and layers: a defined close code, one log line, no leak.

Each kind of bad input of the hardening issue has a test here at the ASGI
level (the server's own refusals, such as invalid UTF-8 at the frame level,
are exercised against real servers in ``tests/test_fuzz_e2e.py``). The
property tests feed arbitrary frames to the JSON consumers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from django_realtime.consumers import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from django_realtime.consumers.websocket import DEFAULT_MAX_MESSAGE_SIZE
from django_realtime.exceptions import (
    InvalidChannelName,
    InvalidFrameError,
)
from django_realtime.layers import get_channel_layer
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(20)

Message = dict[str, Any]

JSON_CONSUMERS = [AsyncJsonWebsocketConsumer, JsonWebsocketConsumer]


class AsyncJsonEcho(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any) -> None:
        await self.send_json(content)


class SyncJsonEcho(JsonWebsocketConsumer):
    def receive_json(self, content: Any) -> None:
        self.send_json(content)


class AsyncEcho(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class SyncEcho(WebsocketConsumer):
    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        self.send(text_data=text_data, bytes_data=bytes_data)


ECHOES = [AsyncEcho, SyncEcho, AsyncJsonEcho, SyncJsonEcho]


async def connected(app: Any, path: str = "/ws/") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, path)
    accepted, _ = await communicator.connect()
    assert accepted
    return communicator


def realtime_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return django_realtime's log records, but the shared layer's sweeps.

    The default in-memory layer outlives each test; its periodic report of
    what earlier tests left to expire may fall inside any test.
    """
    return [
        r
        for r in caplog.records
        if r.name.startswith("django_realtime")
        and not (r.name.startswith("django_realtime.layers") and "expired" in r.msg)
    ]


# Frames a JSON consumer cannot take.


@pytest.mark.parametrize("consumer", [AsyncJsonEcho, SyncJsonEcho])
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"bytes_data": b"\x00\xff"}, 1003),
        ({"text_data": "{nope"}, 1007),
        ({"text_data": ""}, 1007),
        ({"text_data": "1" * 5000}, 1007),
        ({"text_data": "[" * 100_000 + "]" * 100_000}, 1009),
        ({"text_data": '{"a":' * 50_000 + "1" + "}" * 50_000}, 1009),
    ],
    ids=["binary", "invalid", "empty", "huge-int", "deep-list", "deep-object"],
)
async def test_a_json_consumer_closes_on_what_it_cannot_decode_with_one_warning(
    consumer: Any, frame: dict[str, Any], code: int, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = await connected(consumer.as_asgi())
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await communicator.send_to(**frame)
        assert await communicator.receive_output() == {
            "type": "websocket.close",
            "code": code,
        }
        await communicator.disconnect(code)
    [record] = realtime_records(caplog)
    assert record.levelno == logging.WARNING
    assert f"with {code}" in record.getMessage()


@pytest.mark.parametrize("consumer", [AsyncJsonEcho, SyncJsonEcho])
async def test_frames_after_a_refusal_are_not_handed_to_the_consumer(
    consumer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = await connected(consumer.as_asgi())
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await communicator.send_to(text_data="{nope")
        # Frames already on their way when the server got the close.
        await communicator.send_to(text_data='{"late": 1}')
        await communicator.send_to(bytes_data=b"late")
        assert await communicator.receive_output() == {
            "type": "websocket.close",
            "code": 1007,
        }
        assert await communicator.receive_nothing(timeout=0.1)
        await communicator.disconnect(1007)
    assert len(realtime_records(caplog)) == 1


# Message size.


def test_the_default_limit_is_one_mebibyte_on_every_websocket_consumer() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024
    for consumer in ECHOES:
        assert consumer.max_message_size == DEFAULT_MAX_MESSAGE_SIZE


@pytest.mark.parametrize(
    ("consumer", "kind"),
    [(consumer, "text") for consumer in ECHOES]
    # A JSON consumer refuses every binary frame, whatever its size.
    + [(AsyncEcho, "bytes"), (SyncEcho, "bytes")],
)
async def test_a_message_over_max_message_size_closes_with_1009(
    consumer: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    communicator = await connected(consumer.as_asgi(max_message_size=100))
    at_limit = '"' + "x" * 98 + '"'
    frame: dict[str, Any] = (
        {"text_data": at_limit} if kind == "text" else {"bytes_data": b"x" * 100}
    )
    await communicator.send_to(**frame)
    assert await communicator.receive_from() in (at_limit, b"x" * 100)
    over = {key: value + value[:1] for key, value in frame.items()}
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await communicator.send_to(**over)
        assert await communicator.receive_output() == {
            "type": "websocket.close",
            "code": 1009,
        }
        await communicator.disconnect(1009)
    [record] = realtime_records(caplog)
    assert record.levelno == logging.WARNING
    assert "101 bytes" in record.getMessage()
    assert "max_message_size of 100" in record.getMessage()


async def test_text_is_measured_in_utf8_bytes_as_on_the_wire() -> None:
    communicator = await connected(AsyncEcho.as_asgi(max_message_size=10))
    await communicator.send_to(text_data="é" * 5)  # 10 bytes
    assert await communicator.receive_from() == "é" * 5
    await communicator.send_to(text_data="€" * 4)  # 12 bytes, 4 characters
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 1009,
    }
    await communicator.disconnect(1009)


async def test_a_lone_surrogate_is_measured_without_raising() -> None:
    communicator = await connected(AsyncEcho.as_asgi(max_message_size=10))
    await communicator.send_to(text_data="\ud800" * 3)  # 9 bytes, surrogatepass
    assert await communicator.receive_from() == "\ud800" * 3
    await communicator.disconnect()


async def test_max_message_size_none_takes_any_size() -> None:
    communicator = await connected(AsyncEcho.as_asgi(max_message_size=None))
    big = "x" * (2 * DEFAULT_MAX_MESSAGE_SIZE)
    await communicator.send_to(text_data=big)
    assert await communicator.receive_from() == big
    await communicator.disconnect()


async def test_a_subclass_sets_its_own_limit() -> None:
    class Small(AsyncEcho):
        max_message_size = 4

    communicator = await connected(Small.as_asgi())
    await communicator.send_to(bytes_data=b"12345")
    assert await communicator.receive_output() == {
        "type": "websocket.close",
        "code": 1009,
    }
    await communicator.disconnect(1009)


# Exceptions in handlers.


class Probed:
    """Take the layer messages that count a group's members."""

    async def probe(self, event: dict[str, Any]) -> None:
        pass


async def _sends_reaching(group: str) -> int:
    layer = get_channel_layer()
    before = layer.stats.sent
    await layer.group_send(group, {"type": "probe"})
    return int(layer.stats.sent - before)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_receive_that_raises_leaves_groups_and_calls_disconnect(
    flavour: str,
) -> None:
    disconnected: list[int] = []

    if flavour == "async":

        class Failing(Probed, AsyncJsonWebsocketConsumer):
            groups = [f"hostile-receive-{flavour}"]

            async def receive_json(self, content: Any) -> None:
                await self.send_json({"half": True})
                content["message"]  # a KeyError on {}

            async def disconnect(self, code: int) -> None:
                disconnected.append(code)

    else:

        class Failing(Probed, JsonWebsocketConsumer):  # type: ignore[no-redef]
            groups = [f"hostile-receive-{flavour}"]

            def receive_json(self, content: Any) -> None:
                self.send_json({"half": True})
                content["message"]

            def disconnect(self, code: int) -> None:
                disconnected.append(code)

    communicator = await connected(Failing.as_asgi())
    assert await _sends_reaching(f"hostile-receive-{flavour}") == 1
    await communicator.send_json_to({})
    # The exception reaches the server, which logs it and closes with 1011.
    with pytest.raises(KeyError, match="message"):
        await communicator.receive_output()
    assert disconnected == [1011]
    assert await _sends_reaching(f"hostile-receive-{flavour}") == 0


async def test_a_connect_that_raises_leaves_the_groups_it_joined() -> None:
    class Failing(AsyncWebsocketConsumer):
        groups = ["hostile-connect"]

        async def connect(self) -> None:
            raise RuntimeError("connect failed")

    communicator = WebsocketCommunicator(Failing.as_asgi(), "/ws/")
    with pytest.raises(RuntimeError, match="connect failed"):
        await communicator.connect()
    assert await _sends_reaching("hostile-connect") == 0


async def test_a_layer_handler_that_raises_leaves_groups_and_calls_disconnect() -> None:
    disconnected: list[int] = []

    class Failing(Probed, AsyncWebsocketConsumer):
        groups = ["hostile-layer"]

        async def boom(self, event: dict[str, Any]) -> None:
            raise RuntimeError("handler failed")

        async def disconnect(self, code: int) -> None:
            disconnected.append(code)

    communicator = await connected(Failing.as_asgi())
    await get_channel_layer().group_send("hostile-layer", {"type": "boom"})
    with pytest.raises(RuntimeError, match="handler failed"):
        await communicator.receive_output()
    assert disconnected == [1011]
    assert await _sends_reaching("hostile-layer") == 0


async def test_a_disconnect_that_raises_is_not_called_twice() -> None:
    calls: list[int] = []

    class Failing(Probed, AsyncWebsocketConsumer):
        groups = ["hostile-disconnect"]

        async def disconnect(self, code: int) -> None:
            calls.append(code)
            raise RuntimeError("disconnect failed")

    communicator = await connected(Failing.as_asgi())
    with pytest.raises(RuntimeError, match="disconnect failed"):
        await communicator.disconnect(1001)
    assert calls == [1001]
    assert await _sends_reaching("hostile-disconnect") == 0


# Unknown message types from a layer.


async def test_an_unknown_layer_message_type_is_skipped_and_the_member_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Member(AsyncWebsocketConsumer):
        groups = ["hostile-unknown"]

    communicator = await connected(Member.as_asgi())
    with caplog.at_level(logging.WARNING, "django_realtime.consumers.base"):
        await get_channel_layer().group_send("hostile-unknown", {"type": "no.such"})
        await communicator.receive_nothing(0.1)
    assert "no_such" in caplog.text
    assert await _sends_reaching("hostile-unknown") == 1
    await communicator.disconnect()


# Invalid group names made from client input.


@pytest.mark.parametrize("room", ["ok", "bad room", "x" * 120, "\u00e9t\u00e9"])
async def test_a_group_name_from_the_url_is_checked_by_the_layer(room: str) -> None:
    class Room(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.channel_layer.group_add(f"room.{room}", self.channel_name)
            await self.accept()

    communicator = WebsocketCommunicator(Room.as_asgi(), f"/ws/{room}/")
    if room == "ok":
        assert (await communicator.connect())[0]
        await communicator.disconnect()
        return
    # The server answers the handshake with HTTP 500 and logs the exception.
    with pytest.raises(InvalidChannelName):
        await communicator.connect()


# Properties: any frame is echoed or refused with a defined code.

frames = st.one_of(
    st.binary(max_size=300).map(lambda data: {"bytes": data}),
    st.text(max_size=300).map(lambda text: {"text": text}),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    ).map(lambda value: {"text": json.dumps(value)}),
)


async def _answer_to(consumer: Any, frame: dict[str, Any]) -> dict[str, Any]:
    communicator = await connected(consumer.as_asgi(max_message_size=256))
    await communicator.send_input({"type": "websocket.receive", **frame})
    answer = await communicator.receive_output()
    await communicator.disconnect(answer.get("code", 1000))
    return answer


@pytest.mark.parametrize("consumer", ECHOES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames)
def test_any_frame_is_echoed_or_refused_with_a_defined_code(
    consumer: Any, frame: dict[str, Any]
) -> None:
    answer = asyncio.run(asyncio.wait_for(_answer_to(consumer, frame), 10))
    payload = frame.get("text", frame.get("bytes"))
    assert payload is not None
    size = (
        len(payload.encode("utf-8", "surrogatepass"))
        if "text" in frame
        else len(payload)
    )
    if answer["type"] == "websocket.close":
        assert answer["code"] in (1003, 1007, 1009)
        is_json = consumer in (AsyncJsonEcho, SyncJsonEcho)
        assert size > 256 or is_json
    else:
        assert answer["type"] == "websocket.send"
        assert size <= 256


# Servers that refuse a close: daphne's rule, and a close crossing the client's.


class Server:
    """Play the server's side of one connection, with a server's refusals.

    ``refuse`` says which ``websocket.close`` messages the server raises on,
    as daphne (autobahn) raises on codes other than 1000 and 3000-4999, and
    as uvicorn raises on any close once it has answered the client's close.
    The real servers do the same in ``tests/test_fuzz_e2e.py``; here each
    branch is reached on purpose.
    """

    def __init__(self, frames: list[Message], refuse: Any) -> None:
        self.inbox: list[Message] = [{"type": "websocket.connect"}, *frames]
        self.inbox.append({"type": "websocket.disconnect", "code": 1000})
        self.refuse = refuse
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return self.inbox.pop(0)

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.close" and self.refuse(message.get("code")):
            raise RuntimeError(f"refused close code {message.get('code')}")
        self.sent.append(message)

    async def serve(self, app: Any) -> None:
        scope = {"type": "websocket", "path": "/ws/", "headers": [], "subprotocols": []}
        await asyncio.wait_for(app(scope, self.receive, self.send), 5)


def autobahn_refuses(code: int | None) -> bool:
    return code is not None and code != 1000 and not 3000 <= code <= 4999


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"bytes": b"\x00"}, 4015),
        ({"text": "{nope"}, 4000),
        ({"text": "[" * 100_000}, 4013),
        ({"text": "x" * 300}, 4013),
    ],
)
async def test_on_daphne_the_rfc_codes_become_their_4000_twins(
    frame: Message, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server([{"type": "websocket.receive", **frame}], autobahn_refuses)
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await server.serve(AsyncJsonEcho.as_asgi(max_message_size=256))
    assert server.sent[-1] == {"type": "websocket.close", "code": code}
    [record] = realtime_records(caplog)
    assert f"with {code}:" in record.getMessage()


async def test_an_own_code_daphne_cannot_send_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Strict(AsyncWebsocketConsumer):
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            raise InvalidFrameError(1013, "Expected fewer frames.")

    server = Server([{"type": "websocket.receive", "text": "x"}], autobahn_refuses)
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await server.serve(Strict.as_asgi())
    [record] = realtime_records(caplog)
    assert "could not close with 1013" in record.getMessage()


async def test_a_refusal_crossing_the_clients_close_logs_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Server([{"type": "websocket.receive", "bytes": b"x"}], lambda code: True)
    with caplog.at_level(logging.WARNING, logger="django_realtime"):
        await server.serve(AsyncJsonEcho.as_asgi())
    assert [m["type"] for m in server.sent] == ["websocket.accept"]
    [record] = realtime_records(caplog)
    assert "could not close with 1003" in record.getMessage()


async def test_a_handler_failure_on_daphne_leaves_the_1011_to_the_server() -> None:
    server = Server([{"type": "websocket.receive", "text": "{}"}], autobahn_refuses)

    class Failing(AsyncJsonWebsocketConsumer):
        async def receive_json(self, content: Any) -> None:
            content["message"]

    with pytest.raises(KeyError):
        await server.serve(Failing.as_asgi())
    assert [m["type"] for m in server.sent] == ["websocket.accept"]


async def test_a_failing_cleanup_logs_one_error_and_the_exception_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Failing(AsyncJsonWebsocketConsumer):
        async def receive_json(self, content: Any) -> None:
            raise ValueError("handler")

        async def disconnect(self, code: int) -> None:
            raise OSError("cleanup")

    communicator = await connected(Failing.as_asgi())
    with caplog.at_level(logging.ERROR, logger="django_realtime"):
        await communicator.send_json_to({})
        with pytest.raises(ValueError, match="handler"):
            await communicator.receive_output()
    [record] = realtime_records(caplog)
    assert "Could not clean up WebSocket /ws/ after ValueError" in record.getMessage()


async def test_a_bad_name_in_groups_refuses_the_handshake_and_leaves_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Member(Probed, AsyncWebsocketConsumer):
        groups = ["hostile-good", "bad name", "hostile-never"]

    communicator = WebsocketCommunicator(Member.as_asgi(), "/ws/")
    with (
        caplog.at_level(logging.DEBUG, logger="django_realtime"),
        pytest.raises(InvalidChannelName),
    ):
        await communicator.connect()
    assert await _sends_reaching("hostile-good") == 0
    assert not [r for r in realtime_records(caplog) if r.levelno >= logging.WARNING]
