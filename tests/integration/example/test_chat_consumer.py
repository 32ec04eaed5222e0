"""The example chat's consumer and room page, in-process, through their routes.

Users log in with Django's test client; its session cookie goes with the
handshake, through ``AuthMiddlewareStack`` as in the project's asgi.py.
Sockets speak the stream protocol through
:class:`~django_realtime.testing.StreamClient`, as the page's realtime.js
does. ``transaction=True`` everywhere: the consumer saves rows from its own
thread, with its own connection, and the tests read them back.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import AsyncClient
from django.urls import include, path

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.routing import URLRouter
from django_realtime.streams import Position, set_stream_store
from django_realtime.streams.positions import History, Publication
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.streams.stores.base import Listener
from django_realtime.streams.stores.redis import RedisHistoryStore
from django_realtime.testing import StreamClient, flush_streams
from django_realtime.testing.streams import RequestFailed
from example_project.chat.consumers import post_message, room_stream
from example_project.chat.models import MAX_MESSAGE_LENGTH, Message, Room
from example_project.chat.routing import websocket_urlpatterns
from tests.e2e.example.test_chat_e2e import redis_url

__all__ = ["redis_url"]  # a fixture, used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

# The chat's routes with the project's auth stack; the origin check is
# tested end to end (tests/e2e/example/test_chat_e2e.py).
APPLICATION = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))

PASSWORD = "correct horse battery staple"

# The room page's URLs, with the login URLs its template links to.
urlpatterns = [
    path("chat/", include("example_project.chat.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
]

Join = Callable[..., Awaitable[StreamClient]]


class RecordingStore(MemoryHistoryStore):
    """An in-memory store that notes every stream it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.touched: set[str] = set()

    async def publish(self, stream: str, data: str) -> Publication:
        self.touched.add(stream)
        return await super().publish(stream, data)

    async def read(self, stream: str, since: Position | None = None) -> History:
        self.touched.add(stream)
        return await super().read(stream, since)

    async def listen(self, stream: str, listener: Listener) -> None:
        self.touched.add(stream)
        await super().listen(stream, listener)


@pytest.fixture(autouse=True)
def store() -> Iterator[RecordingStore]:
    """Give each test streams of its own, in a fresh in-memory store."""
    fresh = RecordingStore()
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


async def session_cookie(username: str) -> bytes:
    """Create ``username``, log in over HTTP and return the cookie header."""
    await User.objects.acreate_user(username, password=PASSWORD)
    client = AsyncClient()
    assert await client.alogin(username=username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
async def join() -> AsyncIterator[Join]:
    """Return a coroutine function that logs a user in and follows a room.

    ``await join("lobby", "bob")`` opens bob's socket to the room and
    subscribes to its stream; ``subscribe=False`` only opens the socket.
    Every socket is closed at the end of the test.
    """
    cookies: dict[str, bytes] = {}
    clients: list[StreamClient] = []

    async def join(
        room: str, username: str = "alice", *, subscribe: bool = True
    ) -> StreamClient:
        if username not in cookies:
            cookies[username] = await session_cookie(username)
        await Room.objects.aget_or_create(name=room)
        client = StreamClient(
            APPLICATION, f"/ws/chat/{room}/", [(b"cookie", cookies[username])]
        )
        await client.connect()
        clients.append(client)
        if subscribe:
            subscribed = await client.subscribe(room_stream(room))
            assert subscribed["kind"] == "subscribed"
        return client

    yield join
    for client in clients:
        await client.close()


async def post(client: StreamClient, text: Any) -> int:
    """Post ``text`` in ``client``'s room; return the saved message's id."""
    reply = await client.request("post", {"text": text})
    assert set(reply) == {"id"}, reply
    assert isinstance(reply["id"], int)
    return int(reply["id"])


def said(message: Message) -> dict[str, Any]:
    """Return what the room's stream publishes of ``message``."""
    return {
        "type": "message",
        "id": message.pk,
        "author": message.author.username,
        "text": message.text,
        "created": message.created_at.isoformat(),
    }


async def saved_messages() -> list[Message]:
    return [m async for m in Message.objects.select_related("author").order_by("id")]


async def test_an_anonymous_socket_is_refused_before_it_is_accepted() -> None:
    client = StreamClient(APPLICATION, "/ws/chat/lobby/")

    with pytest.raises(RequestFailed) as refused:
        await client.connect()

    # Refused before accept(): the server answers the handshake with a 403.
    assert refused.value.code == 1000


async def test_a_cookie_of_no_session_is_refused() -> None:
    client = StreamClient(
        APPLICATION, "/ws/chat/lobby/", [(b"cookie", b"sessionid=forged")]
    )

    with pytest.raises(RequestFailed):
        await client.connect()


async def test_members_of_a_room_hear_each_others_saved_messages(join: Join) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")

    from_alice = await post(alice, "hello from alice")
    (heard_by_bob,) = await bob.wait_for("chat.lobby", 1)
    from_bob = await post(bob, "hi alice")
    heard_by_alice = await alice.wait_for("chat.lobby", 2)

    first, second = await saved_messages()
    assert (first.pk, first.room_id, first.author.username, first.text) == (
        from_alice,
        "lobby",
        "alice",
        "hello from alice",
    )
    assert (second.pk, second.room_id, second.author.username, second.text) == (
        from_bob,
        "lobby",
        "bob",
        "hi alice",
    )
    assert heard_by_alice == [said(first), said(second)]
    assert heard_by_bob == said(first)
    assert await bob.wait_for("chat.lobby", 2) == heard_by_alice


async def test_a_socket_may_follow_its_own_room_and_nothing_else(join: Join) -> None:
    alice = await join("lobby", subscribe=False)

    for stream in ("chat.kitchen", "chat.lobby2", "chat", "jobs.1", "lobby"):
        with pytest.raises(RequestFailed) as refused:
            await alice.subscribe(stream)
        assert refused.value.code == "forbidden", stream
    subscribed = await alice.subscribe("chat.lobby")

    assert (subscribed["recovered"], subscribed["reason"]) == (False, None)


async def test_a_message_whose_transaction_rolls_back_is_never_published(
    join: Join, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")
    # Alice's account goes while her socket stays open: her next message
    # breaks the author foreign key, which the database checks at commit,
    # after the consumer has asked for the publication.
    await User.objects.filter(username="alice").adelete()

    with (
        caplog.at_level(logging.ERROR, logger="example_project.chat"),
        pytest.raises(RequestFailed) as refused,
    ):
        await post(alice, "am I still here?")

    assert (refused.value.code, refused.value.frame["message"]) == (
        "not_saved",
        "Your message could not be saved.",
    )
    assert await bob.communicator.receive_nothing()
    assert await alice.communicator.receive_nothing()
    assert await saved_messages() == []
    (record,) = [r for r in caplog.records if r.name.startswith("example_project")]
    assert "'alice'" in record.getMessage()
    assert record.exc_info is not None
    # Bob's socket and the room are unharmed; nothing took offset 1.
    await post(bob, "alice?")
    (saved,) = await saved_messages()
    assert await bob.wait_for("chat.lobby", 1) == [said(saved)]
    assert bob.positions["chat.lobby"].offset == 1


async def test_another_room_hears_nothing(join: Join) -> None:
    alice = await join("lobby", "alice")
    carol = await join("kitchen", "carol")

    await post(alice, "only for the lobby")

    (saved,) = await saved_messages()
    assert await alice.wait_for("chat.lobby", 1) == [said(saved)]
    assert saved.room_id == "lobby"
    assert await carol.communicator.receive_nothing()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"text": ""}, "some text"),
        ({"text": " \n\t "}, "some text"),
        ({"text": "x" * (MAX_MESSAGE_LENGTH + 1)}, "at most 2000 characters"),
        ({"text": 42}, "as a string, got int"),
        ({"message": "hi"}, '{"text": "..."}'),
        (["hi"], '{"text": "..."}'),
        ("hi", '{"text": "..."}'),
        (None, '{"text": "..."}'),
    ],
    ids=[
        "empty",
        "blank",
        "too-long",
        "not-a-string",
        "no-text",
        "list",
        "string",
        "none",
    ],
)
async def test_an_invalid_message_is_refused_and_neither_saved_nor_published(
    join: Join,
    caplog: pytest.LogCaptureFixture,
    data: Any,
    expected: str,
) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")

    with (
        caplog.at_level(logging.WARNING, logger="example_project.chat"),
        pytest.raises(RequestFailed) as refused,
    ):
        await alice.request("post", data)

    assert refused.value.code == "invalid"
    assert expected in refused.value.frame["message"]
    assert await bob.communicator.receive_nothing()
    assert await saved_messages() == []
    (record,) = [r for r in caplog.records if r.name.startswith("example_project")]
    assert record.levelno == logging.WARNING
    assert "'lobby'" in record.getMessage()
    assert expected in record.getMessage()
    # The socket stays open: the next valid message goes through.
    await post(alice, "sorry")
    assert (await bob.wait_for("chat.lobby", 1))[0]["text"] == "sorry"


async def test_a_message_of_the_maximum_length_is_saved_and_published(
    join: Join,
) -> None:
    alice = await join("lobby")
    longest = "é" * MAX_MESSAGE_LENGTH

    await post(alice, longest)

    (saved,) = await saved_messages()
    assert saved.text == longest
    assert await alice.wait_for("chat.lobby", 1) == [said(saved)]


@pytest.mark.parametrize(
    "room", ["a" * 50, "Room_2-b", "0"], ids=["fifty-chars", "mixed", "one-digit"]
)
async def test_room_names_of_letters_digits_hyphens_underscores_are_routed(
    join: Join, room: str
) -> None:
    member = await join(room)

    await post(member, "hi")

    assert (await member.wait_for(f"chat.{room}", 1))[0]["text"] == "hi"
    (saved,) = await saved_messages()
    assert saved.room_id == room


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
    path: str,
) -> None:
    cookie = await session_cookie("alice")
    client = StreamClient(APPLICATION, path, [(b"cookie", cookie)])

    with pytest.raises(RequestFailed):
        await client.connect()


async def test_a_member_who_drops_gets_what_was_said_meanwhile_once_in_order(
    join: Join,
) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")
    await post(alice, "before")
    await bob.wait_for("chat.lobby", 1)

    await bob.drop()
    for text in ("while", "you", "were", "away"):
        await post(alice, text)
    (resumed,) = await bob.reconnect()
    await post(alice, "welcome back")

    assert (resumed["recovered"], resumed["replayed"]) == (True, 4)
    heard = await bob.wait_for("chat.lobby", 6)
    assert [m["text"] for m in heard] == [
        "before",
        "while",
        "you",
        "were",
        "away",
        "welcome back",
    ]
    assert [m["id"] for m in heard] == [m.pk for m in await saved_messages()]
    assert bob.losses == []


async def test_a_member_who_comes_back_after_the_history_is_lost_is_told_so(
    join: Join,
) -> None:
    alice = await join("lobby", "alice")
    bob = await join("lobby", "bob")
    await post(alice, "before")
    await bob.wait_for("chat.lobby", 1)
    await bob.drop()

    # As a restart of a server with the in-memory store would.
    await flush_streams()
    await post(alice, "after the restart")
    (resumed,) = await bob.reconnect()

    assert (resumed["recovered"], resumed["reason"]) == (False, "epoch_changed")
    assert bob.losses == [resumed]
    # The page reloads its messages from the database; the stream goes on.
    await post(alice, "and on")
    assert [m["text"] for m in await bob.wait_for("chat.lobby", 2)] == [
        "before",
        "and on",
    ]


# -- the room page ------------------------------------------------------------


@pytest.fixture
def page_settings(settings: Any) -> None:
    """Serve the room page as the example project does."""
    from example_project import settings as example

    settings.ROOT_URLCONF = __name__
    settings.TEMPLATES = example.TEMPLATES
    settings.LOGIN_URL = "login"


def script_data(html: str, element_id: str) -> Any:
    """Return the JSON of the page's ``json_script`` element ``element_id``."""
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', html
    )
    assert match, f"no #{element_id} in the page:\n{html}"
    return json.loads(match[1])


async def room_page(username: str, room: str) -> str:
    client = AsyncClient()
    assert await client.alogin(username=username, password=PASSWORD)
    response = await client.get(f"/chat/{room}/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.usefixtures("page_settings")
async def test_the_room_page_follows_the_stream_from_before_its_messages(
    join: Join, store: MemoryHistoryStore
) -> None:
    alice = await join("lobby", "alice")
    await post(alice, "said before the page")
    (said_before,) = await saved_messages()

    html = await room_page("alice", "lobby")
    await post(alice, "said after the page")

    since = script_data(html, "room-since")
    assert script_data(html, "room-name") == "lobby"
    position = (await store.read("chat.lobby")).position
    assert since == {"epoch": position.epoch, "offset": 1}
    # Alice's own message, marked as hers.
    assert f'<p data-id="{said_before.pk}" class="mine">' in html
    assert "said after the page" not in html
    assert '<script type="importmap">' in html
    assert "/static/django_realtime/realtime.js" in html
    assert "/static/chat/room.js" in html
    # The page subscribes from that position: it gets what it lacks.
    page = await join("lobby", "alice", subscribe=False)
    resumed = await page.subscribe("chat.lobby", Position(**since))
    assert (resumed["recovered"], resumed["replayed"]) == (True, 1)
    heard = await page.wait_for("chat.lobby", 1)
    assert [m["text"] for m in heard] == ["said after the page"]


@pytest.mark.usefixtures("page_settings")
async def test_the_page_of_a_room_with_no_message_yet_starts_at_offset_zero(
    join: Join,
) -> None:
    await session_cookie("alice")
    await Room.objects.acreate(name="empty-room")

    html = await room_page("alice", "empty-room")

    assert script_data(html, "room-since")["offset"] == 0
    assert 'data-id="' not in html


async def test_post_message_publishes_only_once_the_row_has_committed(
    store: MemoryHistoryStore,
) -> None:
    alice = await User.objects.acreate_user("alice", password=PASSWORD)
    await Room.objects.acreate(name="lobby")

    def post_in_a_transaction() -> tuple[Message, int]:
        with transaction.atomic():
            message = post_message(room="lobby", author=alice, text="held")
            offset_before_commit = async_to_sync(store.read)("chat.lobby").offset
        return message, offset_before_commit

    message, offset_before_commit = await sync_to_async(post_in_a_transaction)()

    assert offset_before_commit == 0
    epoch = (await store.read("chat.lobby")).epoch
    history = await store.read("chat.lobby", Position(epoch, 0))
    assert [json.loads(p.data) for p in history.publications] == [
        {
            "type": "message",
            "id": message.pk,
            "author": "alice",
            "text": "held",
            "created": message.created_at.isoformat(),
        }
    ]


async def test_a_socket_that_floods_the_room_is_closed_with_4029(
    join: Join, caplog: pytest.LogCaptureFixture
) -> None:
    client = await join("lobby")
    communicator = client.communicator
    # The route allows 10 frames a second in bursts of 30 (routing.py).
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        for _ in range(40):
            await communicator.send_to(text_data=json.dumps({"kind": "ping"}))
        while True:
            output = await communicator.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                break
    assert output["code"] == 4029
    assert "over 10 messages a second (bursts of 30)" in caplog.text


# -- rooms exist before anyone talks in them ----------------------------------


async def test_a_socket_to_a_room_nobody_created_is_refused_and_reads_no_stream(
    store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = await session_cookie("alice")
    client = StreamClient(APPLICATION, "/ws/chat/made-up/", [(b"cookie", cookie)])

    with (
        caplog.at_level(logging.WARNING, logger="example_project.chat"),
        pytest.raises(RequestFailed),
    ):
        await client.connect()

    assert store.touched == set()
    assert "Refused a socket of 'alice' to room made-up: no such room." in caplog.text
    assert not await Room.objects.filter(name="made-up").aexists()


@pytest.mark.usefixtures("page_settings")
async def test_the_page_of_a_room_nobody_created_is_a_404_and_reads_no_stream(
    store: RecordingStore,
) -> None:
    await session_cookie("alice")
    client = AsyncClient()
    assert await client.alogin(username="alice", password=PASSWORD)

    response = await client.get("/chat/made-up/")

    assert response.status_code == 404
    assert store.touched == set()
    assert not await Room.objects.filter(name="made-up").aexists()


async def test_a_room_deleted_while_members_are_connected_takes_no_more_messages(
    join: Join,
) -> None:
    alice = await join("closing", "alice")
    await post(alice, "last words")
    await Room.objects.filter(name="closing").adelete()

    with pytest.raises(RequestFailed) as refused:
        await post(alice, "anyone?")

    assert refused.value.code == "not_saved"
    # The room's messages went with it, and nothing new was published.
    assert await saved_messages() == []
    assert len(await alice.wait_for("chat.closing", 1)) == 1
    assert await alice.communicator.receive_nothing()


@pytest.mark.parametrize("name", ["lobby\n", "two words", "", "a" * 51, "café"])
def test_a_room_name_that_cannot_be_in_a_url_is_refused(name: str) -> None:
    field = Room._meta.get_field("name")

    with pytest.raises(ValidationError) as refused:
        field.clean(name, Room(name=name))

    if name:  # Django refuses an empty name as blank, before the pattern.
        assert (
            f"Expected 1 to 50 letters, digits, hyphens or underscores, got {name!r}."
        ) in refused.value.messages


@pytest.mark.redis
@pytest.mark.usefixtures("page_settings")
async def test_visiting_rooms_nobody_created_leaves_no_key_in_redis(
    redis_url: str,
) -> None:
    import redis.asyncio as aioredis

    prefix = f"chat-test-{uuid.uuid4().hex[:12]}"
    store = RedisHistoryStore(redis_url, prefix=prefix)
    old = set_stream_store(store)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        cookie = await session_cookie("alice")
        client = AsyncClient()
        assert await client.alogin(username="alice", password=PASSWORD)
        for room in ("made-up", "another-one", "and-more"):
            assert (await client.get(f"/chat/{room}/")).status_code == 404
            socket = StreamClient(
                APPLICATION, f"/ws/chat/{room}/", [(b"cookie", cookie)]
            )
            with pytest.raises(RequestFailed):
                await socket.connect()

        assert await redis.keys(f"{prefix}:*") == []
        # A room that exists has a stream, which Redis keeps.
        await Room.objects.acreate(name="real")
        assert (await client.get("/chat/real/")).status_code == 200
        assert await redis.keys(f"{prefix}:*") == [
            f"{prefix}:{{chat.real}}:meta".encode()
        ]
    finally:
        set_stream_store(old)
        await store.flush()
        await store.close()
        await redis.aclose()
