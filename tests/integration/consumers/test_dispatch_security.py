"""A channel layer message reaches handlers only, never the consumer's internals.

An application may put client text into a message type (a chat command
relayed to a group, say). Such a type must never call a private method, a
method of the framework, or a handler of the server's own messages,
whatever its spelling: dots and underscores are the same name once dots
become underscores. The consumer skips such a message with a warning and
keeps the connection open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from django_realtime.consumers import AsyncJsonWebsocketConsumer
from django_realtime.exceptions import InvalidMessageError
from django_realtime.layers import InMemoryChannelLayer, channel_layers
from django_realtime.ops.logs import EXCERPT_LIMIT
from django_realtime.testing import WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def layer() -> Iterator[InMemoryChannelLayer]:
    fresh = InMemoryChannelLayer()
    old = channel_layers.set("default", fresh)
    yield fresh
    channel_layers.set("default", old)


class Target(AsyncJsonWebsocketConsumer):
    """Echo frames; record every call a layer message must never reach."""

    calls: list[str]

    async def connect(self) -> None:
        self.calls = []
        await self.accept()
        await self.send_json({"channel": self.channel_name})

    async def receive_json(self, content: Any) -> None:
        self.calls.append("receive_json")
        await self.send_json({"echo": content})

    async def _my_private_handler(self, message: dict[str, Any]) -> None:
        self.calls.append("_my_private_handler")
        await self.send_json({"private": True})

    async def chat_message(self, message: dict[str, Any]) -> None:
        await self.send_json({"chat": message["text"]})


async def open_target() -> tuple[WebsocketCommunicator, str]:
    communicator = WebsocketCommunicator(Target.as_asgi(), "/ws/target/")
    assert (await communicator.connect())[0]
    hello = await communicator.receive_json_from()
    return communicator, hello["channel"]


async def still_open(communicator: WebsocketCommunicator, layer: Any, channel: str):
    """Check the connection still answers frames and layer messages, in order."""
    await layer.send(channel, {"type": "chat.message", "text": "after"})
    assert await communicator.receive_json_from() == {"chat": "after"}
    await communicator.send_json_to({"n": 1})
    assert await communicator.receive_json_from() == {"echo": {"n": 1}}


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"type": ".my_private_handler"}, id="dot-private"),
        pytest.param({"type": "._refuse", "code": 1000}, id="dot-underscore-refuse"),
        pytest.param({"type": ".refuse"}, id="dot-refuse"),
        pytest.param({"type": ".groups_expired"}, id="dot-groups-expired"),
        pytest.param({"type": ".end_after"}, id="dot-end-after"),
        pytest.param({"type": "websocket_receive", "text": "{}"}, id="ws-receive"),
        pytest.param({"type": "websocket_disconnect", "code": 1000}, id="ws-disc"),
        pytest.param({"type": "websocket.receive", "text": "{}"}, id="ws.receive"),
        pytest.param({"type": "websocket_connect"}, id="ws-connect"),
        pytest.param({"type": "websocket_send", "text": "x"}, id="ws-send"),
        pytest.param({"type": "websocket.disconnect"}, id="ws.disconnect"),
        pytest.param({"type": "send.json", "content": 1}, id="framework-method"),
        pytest.param({"type": "receive_json", "content": 1}, id="receive-json"),
    ],
)
async def test_a_layer_message_naming_what_is_not_a_handler_is_skipped_and_the_connection_stays_open(  # noqa: E501
    layer: InMemoryChannelLayer,
    caplog: pytest.LogCaptureFixture,
    message: dict[str, Any],
) -> None:
    communicator, channel = await open_target()
    with caplog.at_level(logging.WARNING, "django_realtime"):
        await layer.send(channel, message)
        await still_open(communicator, layer, channel)
    # Nothing ran for the layer message: still_open() found its answers
    # first, with no echo, close or private reply before them.
    skipped = [r for r in caplog.records if "Skipped a channel layer" in r.message]
    assert len(skipped) == 1, caplog.text
    await communicator.disconnect()


async def test_the_server_still_reaches_its_own_handlers_with_either_spelling() -> None:
    communicator = WebsocketCommunicator(Target.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    # A server's message comes through receive(): not a layer message.
    await communicator.send_input({"type": "websocket.receive", "text": '"dotted"'})
    assert await communicator.receive_json_from() == {"echo": "dotted"}
    await communicator.send_input({"type": "websocket_receive", "text": '"under"'})
    assert await communicator.receive_json_from() == {"echo": "under"}
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["._secret", ".x", "__init__", "_private", "."])
async def test_a_type_that_becomes_a_private_name_names_no_handler(kind: str) -> None:
    with pytest.raises(InvalidMessageError, match="not a handler"):
        await Target().dispatch({"type": kind})


async def test_the_private_handler_is_not_called_by_a_layer_message(
    layer: InMemoryChannelLayer,
) -> None:
    calls: list[str] = []

    class Spy(Target):
        async def _my_private_handler(self, message: dict[str, Any]) -> None:
            calls.append("private")

        async def receive_json(self, content: Any) -> None:
            calls.append(f"receive_json {content!r}")
            await self.send_json({"echo": content})

    communicator = WebsocketCommunicator(Spy.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    channel = (await communicator.receive_json_from())["channel"]
    await layer.send(channel, {"type": ".my_private_handler"})
    await layer.send(channel, {"type": "websocket_receive", "text": '"forged"'})
    await still_open(communicator, layer, channel)
    assert calls == ["receive_json {'n': 1}"]
    await communicator.disconnect()


# Client text in log lines and error messages.


async def test_a_hostile_layer_message_type_is_escaped_and_cut_in_the_warning(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    communicator, channel = await open_target()
    forged = "no.such\nCRITICAL forged line " + "x" * 10_000
    with caplog.at_level(logging.WARNING, "django_realtime"):
        await layer.send(channel, {"type": forged})
        await still_open(communicator, layer, channel)
    (record,) = [r for r in caplog.records if "Skipped a channel layer" in r.message]
    line = record.getMessage()
    assert "\n" not in line
    assert "no.such\\nCRITICAL" in line
    assert len(line) < 4 * EXCERPT_LIMIT
    await communicator.disconnect()


async def test_a_hostile_path_is_escaped_in_the_consumers_log_lines(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/ws/\x1b[31mred\nforged" + "y" * 5_000
    communicator = WebsocketCommunicator(Target.as_asgi(), "/ws/")
    communicator.scope["path"] = path
    assert (await communicator.connect())[0]
    channel = (await communicator.receive_json_from())["channel"]
    with caplog.at_level(logging.WARNING, "django_realtime"):
        await layer.send(channel, {"type": "no.such"})
        await still_open(communicator, layer, channel)
        await communicator.send_to(text_data="{not json")
        assert (await communicator.receive_output())["code"] == 1007
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    for line in lines:
        assert "\n" not in line
        assert "\x1b" not in line
        assert "\\x1b[31mred\\nforged" in line
        assert len(line) < 4 * EXCERPT_LIMIT


async def test_an_invalid_type_from_the_server_is_cut_in_the_error_message() -> None:
    with pytest.raises(InvalidMessageError) as caught:
        await Target().dispatch({"type": "nope\n" + "z" * 10_000})
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 4 * EXCERPT_LIMIT


async def test_sending_both_text_and_bytes_names_only_excerpts_of_them() -> None:
    class Both(AsyncJsonWebsocketConsumer):
        async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
            await self.send(text_data=text_data, bytes_data=b"\x00" * 10_000)

    communicator = WebsocketCommunicator(Both.as_asgi(), "/ws/")
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data="echo\n" + "e" * 10_000)
    with pytest.raises(ValueError, match="Expected exactly one of") as caught:
        await communicator.receive_output()
    message = str(caught.value)
    assert "text_data='echo\\neee" in message
    assert "bytes_data=b'\\x00\\x00" in message
    assert len(message) < 4 * EXCERPT_LIMIT
