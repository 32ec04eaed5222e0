"""The example chat's consumer, driven in-process through its routes.

Users log in with Django's test client; its session cookie goes with the
handshake, through ``AuthMiddlewareStack`` as in the project's asgi.py.
``transaction=True`` everywhere: the consumer saves rows from its own
thread, with its own connection, and the tests read them back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.layers import InMemoryChannelLayer
from django_realtime.layers.base import ChannelLayer
from django_realtime.routing import URLRouter
from django_realtime.testing import WebsocketCommunicator
from example_project.chat.models import MAX_MESSAGE_LENGTH, Message
from example_project.chat.routing import websocket_urlpatterns

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

CommunicatorFactory = Callable[..., WebsocketCommunicator]
Join = Callable[..., Awaitable[WebsocketCommunicator]]

# The chat's routes with the project's auth stack; the origin check is
# tested end to end (tests/example/test_chat_e2e.py).
APPLICATION = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


async def session_cookie(username: str) -> bytes:
    """Create ``username``, log in over HTTP and return the cookie header."""
    await User.objects.acreate_user(username, password=PASSWORD)
    client = AsyncClient()
    assert await client.alogin(username=username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def join(
    websocket_communicator: CommunicatorFactory, channel_layer: ChannelLayer
) -> Join:
    """Return a coroutine function that logs a user in and joins a room."""
    cookies: dict[str, bytes] = {}

    async def join(room: str, username: str = "alice") -> WebsocketCommunicator:
        if username not in cookies:
            cookies[username] = await session_cookie(username)
        communicator = websocket_communicator(
            APPLICATION, f"/ws/chat/{room}/", [(b"cookie", cookies[username])]
        )
        connected, _ = await communicator.connect()
        assert connected, f"the socket of {username} to room {room!r} was refused"
        return communicator

    return join


def said(message: Message) -> dict[str, Any]:
    """Return what the room hears of ``message``."""
    return {
        "id": message.pk,
        "author": message.author.username,
        "message": message.text,
    }


async def saved_messages() -> list[Message]:
    return [m async for m in Message.objects.select_related("author").order_by("id")]


async def test_an_anonymous_socket_is_refused_before_it_is_accepted(
    websocket_communicator: CommunicatorFactory, channel_layer: ChannelLayer
) -> None:
    communicator = websocket_communicator(APPLICATION, "/ws/chat/lobby/")

    connected, _ = await communicator.connect()

    assert not connected


async def test_a_cookie_of_no_session_is_refused(
    websocket_communicator: CommunicatorFactory, channel_layer: ChannelLayer
) -> None:
    communicator = websocket_communicator(
        APPLICATION, "/ws/chat/lobby/", [(b"cookie", b"sessionid=forged")]
    )

    connected, _ = await communicator.connect()

    assert not connected


async def test_members_of_a_room_hear_each_others_saved_messages(join: Join) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")

    await alice.send_json_to({"message": "hello from alice"})
    heard_by_alice = await alice.receive_json_from()
    assert await bob.receive_json_from() == heard_by_alice
    await bob.send_json_to({"message": "hi alice"})
    heard_by_bob = await bob.receive_json_from()
    assert await alice.receive_json_from() == heard_by_bob

    first, second = await saved_messages()
    assert (first.room, first.author.username, first.text) == (
        "lobby",
        "alice",
        "hello from alice",
    )
    assert (second.room, second.author.username, second.text) == (
        "lobby",
        "bob",
        "hi alice",
    )
    assert heard_by_alice == said(first)
    assert heard_by_bob == said(second)


async def test_a_message_whose_transaction_rolls_back_is_never_broadcast(
    join: Join, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")
    # Alice's account goes while her socket stays open: her next message
    # breaks the author foreign key, which the database checks at commit,
    # after the consumer has asked for the broadcast.
    await User.objects.filter(username="alice").adelete()

    with caplog.at_level(logging.ERROR, logger="example_project.chat"):
        await alice.send_json_to({"message": "am I still here?"})
        reply = await alice.receive_json_from()

    assert reply == {"error": "Your message could not be saved."}
    assert await bob.receive_nothing()
    assert await alice.receive_nothing()
    assert await saved_messages() == []
    (record,) = [r for r in caplog.records if r.name.startswith("example_project")]
    assert "'alice'" in record.getMessage()
    assert record.exc_info is not None
    # Bob's socket and the room are unharmed.
    await bob.send_json_to({"message": "alice?"})
    heard = await bob.receive_json_from()
    (saved,) = await saved_messages()
    assert heard == said(saved)


async def test_another_room_hears_nothing(join: Join) -> None:
    alice = await join("lobby", "alice")
    carol = await join("kitchen", "carol")

    await alice.send_json_to({"message": "only for the lobby"})

    heard = await alice.receive_json_from()
    (saved,) = await saved_messages()
    assert heard == said(saved)
    assert saved.room == "lobby"
    assert await carol.receive_nothing()


async def test_a_member_who_left_is_no_longer_in_the_group(
    join: Join, channel_layer: ChannelLayer
) -> None:
    assert isinstance(channel_layer, InMemoryChannelLayer)
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")
    await bob.disconnect()
    sent_before = channel_layer.stats.sent

    await alice.send_json_to({"message": "is anyone there?"})

    assert (await alice.receive_json_from())["message"] == "is anyone there?"
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
async def test_an_invalid_message_gets_an_error_frame_and_is_neither_saved_nor_sent(
    join: Join,
    caplog: pytest.LogCaptureFixture,
    content: Any,
    expected: str,
) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")

    with caplog.at_level(logging.WARNING, logger="example_project.chat"):
        await alice.send_json_to(content)
        reply = await alice.receive_json_from()

    assert set(reply) == {"error"}
    assert expected in reply["error"]
    assert await bob.receive_nothing()
    assert await saved_messages() == []
    (record,) = [r for r in caplog.records if r.name.startswith("example_project")]
    assert record.levelno == logging.WARNING
    assert "'lobby'" in record.getMessage()
    assert expected in record.getMessage()
    # The socket stays open: the next valid message goes through.
    await alice.send_json_to({"message": "sorry"})
    assert (await bob.receive_json_from())["message"] == "sorry"


async def test_a_message_of_the_maximum_length_is_saved_and_relayed(
    join: Join,
) -> None:
    alice = await join("lobby")
    longest = "é" * MAX_MESSAGE_LENGTH

    await alice.send_json_to({"message": longest})

    heard = await alice.receive_json_from()
    (saved,) = await saved_messages()
    assert saved.text == longest
    assert heard == said(saved)


@pytest.mark.parametrize(
    "room", ["a" * 50, "Room_2-b", "0"], ids=["fifty-chars", "mixed", "one-digit"]
)
async def test_room_names_of_letters_digits_hyphens_underscores_are_routed(
    join: Join, room: str
) -> None:
    member = await join(room)

    await member.send_json_to({"message": "hi"})

    assert (await member.receive_json_from())["message"] == "hi"
    (saved,) = await saved_messages()
    assert saved.room == room


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
async def test_other_room_names_are_not_routed_even_for_a_logged_in_user(
    websocket_communicator: CommunicatorFactory, path: str
) -> None:
    cookie = await session_cookie("alice")
    communicator = websocket_communicator(APPLICATION, path, [(b"cookie", cookie)])

    connected, _ = await communicator.connect()

    assert not connected
