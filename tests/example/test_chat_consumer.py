"""The example chat's consumer, driven in-process through its routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from django_realtime.layers import InMemoryChannelLayer
from django_realtime.layers.base import ChannelLayer
from django_realtime.routing import URLRouter
from django_realtime.testing import WebsocketCommunicator
from example_project.chat.consumers import MAX_MESSAGE_LENGTH
from example_project.chat.routing import websocket_urlpatterns

CommunicatorFactory = Callable[..., WebsocketCommunicator]

# The chat's routes alone: the tests run on the test settings, not the example's.
APPLICATION = URLRouter(websocket_urlpatterns)


@pytest.fixture
def join(
    websocket_communicator: CommunicatorFactory, channel_layer: ChannelLayer
) -> Callable[[str], Any]:
    """Return a coroutine function that connects one socket to a room."""

    async def join(room: str) -> WebsocketCommunicator:
        communicator = websocket_communicator(APPLICATION, f"/ws/chat/{room}/")
        connected, _ = await communicator.connect()
        assert connected, f"the socket to room {room!r} was refused"
        return communicator

    return join


async def test_members_of_a_room_see_each_others_messages(
    join: Callable[[str], Any],
) -> None:
    alice = await join("lobby")
    bob = await join("lobby")

    await alice.send_json_to({"message": "hello from alice"})
    assert await alice.receive_json_from() == {"message": "hello from alice"}
    assert await bob.receive_json_from() == {"message": "hello from alice"}

    await bob.send_json_to({"message": "hi alice"})
    assert await bob.receive_json_from() == {"message": "hi alice"}
    assert await alice.receive_json_from() == {"message": "hi alice"}


async def test_another_room_hears_nothing(join: Callable[[str], Any]) -> None:
    alice = await join("lobby")
    carol = await join("kitchen")

    await alice.send_json_to({"message": "only for the lobby"})

    assert await alice.receive_json_from() == {"message": "only for the lobby"}
    assert await carol.receive_nothing()


async def test_a_member_who_left_is_no_longer_in_the_group(
    join: Callable[[str], Any], channel_layer: ChannelLayer
) -> None:
    assert isinstance(channel_layer, InMemoryChannelLayer)
    alice = await join("lobby")
    bob = await join("lobby")
    await bob.disconnect()
    sent_before = channel_layer.stats.sent

    await alice.send_json_to({"message": "is anyone there?"})

    assert await alice.receive_json_from() == {"message": "is anyone there?"}
    # One group member left, so the group message was put on one channel.
    assert channel_layer.stats.sent - sent_before == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"message": ""}, "some text"),
        ({"message": " \n\t "}, "some text"),
        ({"message": "x" * (MAX_MESSAGE_LENGTH + 1)}, "at most 2000 characters"),
        ({"message": 42}, "as a string, got int"),
        ({"text": "hi"}, '{"message": "..."}'),
        (["hi"], '{"message": "..."}'),
        ("hi", '{"message": "..."}'),
    ],
    ids=["empty", "blank", "too-long", "not-a-string", "no-message", "list", "string"],
)
async def test_an_invalid_message_gets_an_error_frame_and_reaches_nobody(
    join: Callable[[str], Any],
    caplog: pytest.LogCaptureFixture,
    content: Any,
    expected: str,
) -> None:
    alice = await join("lobby")
    bob = await join("lobby")

    with caplog.at_level(logging.WARNING, logger="example_project.chat"):
        await alice.send_json_to(content)
        reply = await alice.receive_json_from()

    assert set(reply) == {"error"}
    assert expected in reply["error"]
    assert await bob.receive_nothing()
    (record,) = [r for r in caplog.records if r.name.startswith("example_project")]
    assert record.levelno == logging.WARNING
    assert "'lobby'" in record.getMessage()
    assert expected in record.getMessage()
    # The socket stays open: the next valid message goes through.
    await alice.send_json_to({"message": "sorry"})
    assert await bob.receive_json_from() == {"message": "sorry"}


async def test_a_message_of_the_maximum_length_is_relayed(
    join: Callable[[str], Any],
) -> None:
    alice = await join("lobby")
    longest = "é" * MAX_MESSAGE_LENGTH

    await alice.send_json_to({"message": longest})

    assert await alice.receive_json_from() == {"message": longest}


@pytest.mark.parametrize(
    "room", ["a" * 50, "Room_2-b", "0"], ids=["fifty-chars", "mixed", "one-digit"]
)
async def test_room_names_of_letters_digits_hyphens_underscores_are_routed(
    join: Callable[[str], Any], room: str
) -> None:
    member = await join(room)

    await member.send_json_to({"message": "hi"})

    assert await member.receive_json_from() == {"message": "hi"}


@pytest.mark.parametrize(
    "path",
    [
        "/ws/chat/" + "a" * 51 + "/",
        "/ws/chat/two words/",
        "/ws/chat/semi;colon/",
        "/ws/chat/café/",
        "/ws/chat//",
        "/ws/chat/lobby",
        "/ws/chat/lobby/extra/",
    ],
    ids=["too-long", "space", "semicolon", "non-ascii", "empty", "no-slash", "extra"],
)
async def test_other_room_names_are_not_routed(
    websocket_communicator: CommunicatorFactory, path: str
) -> None:
    communicator = websocket_communicator(APPLICATION, path)

    connected, _ = await communicator.connect()

    assert not connected
