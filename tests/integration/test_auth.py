"""The connection's user: a real HTTP login, then a WebSocket behind the stack.

Every test runs on SQLite and on PostgreSQL (the ``database`` fixture), and
the central ones on every server-side session engine Django ships.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.contrib.auth import aauthenticate
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient
from django.urls import path

from django_realtime.auth import AuthMiddlewareStack, get_user, login, logout
from django_realtime.consumers import AsyncJsonWebsocketConsumer, JsonWebsocketConsumer
from django_realtime.delivery.db import aclose_old_connections
from django_realtime.middleware.handoff import TOKEN_HEADER, take_session_cookie
from django_realtime.sessions import SessionMiddlewareStack
from django_realtime.streams import StreamConsumer
from tests.session_databases import database, engine, uses_both_databases

__all__ = ["database", "engine"]  # fixtures used by name

pytestmark = [pytest.mark.timeout(30), uses_both_databases, pytest.mark.urls(__name__)]

PASSWORD = "correct horse battery staple"


# HTTP side: the views a browser would call around its socket.


def visit(request: HttpRequest) -> HttpResponse:
    request.session["cart"] = "apples"
    return HttpResponse("ok")


def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "user": request.user.get_username(),
            "cart": request.session.get("cart"),
            "x": request.session.get("x"),
        }
    )


urlpatterns = [
    path("visit/", visit),
    path("whoami/", whoami),
    path("realtime/session/", take_session_cookie, name="realtime-session"),
]


# Socket side: consumers that report and change the connection's user.


class AuthConsumer(AsyncJsonWebsocketConsumer):
    """Report the connection's user and session; change them on request.

    A login answers with the session frame login() returned, if any, in
    ``frame``: the consumer's own protocol carries it to the page.
    """

    channel_layer_alias = None

    async def connect(self) -> None:
        query = self.scope["query_string"].decode()
        frame = None
        if query.startswith("login="):
            user = await User.objects.aget(username=query.removeprefix("login="))
            frame = await login(self.scope, user)
        await self.accept()
        if frame is not None:
            await self.send_json(frame)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        session = self.scope["session"]
        op = content["op"]
        frame = None
        if op == "login":
            user = await aauthenticate(
                username=content["username"], password=content["password"]
            )
            assert user is not None
            frame = await login(self.scope, user, rotate=content.get("rotate", True))
        elif op == "logout":
            await logout(self.scope)
        elif op == "set":
            session["x"] = content["value"]
            await session.asave()
        await self.send_json(
            {
                "user": self.scope["user"].get_username(),
                "cart": session.get("cart"),
                "x": session.get("x"),
                "key": session.session_key,
                "frame": frame,
            }
        )


class SyncAuthConsumer(JsonWebsocketConsumer):
    channel_layer_alias = None

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        session = self.scope["session"]
        op = content["op"]
        frame = None
        if op == "login":
            user = User.objects.get(username=content["username"])
            frame = async_to_sync(login)(
                self.scope, user, rotate=content.get("rotate", True)
            )
        elif op == "logout":
            async_to_sync(logout)(self.scope)
        elif op == "set":
            session["x"] = content["value"]
            session.save()
        self.send_json(
            {
                "user": self.scope["user"].get_username(),
                "cart": session.get("cart"),
                "x": session.get("x"),
                "key": session.session_key,
                "frame": frame,
            }
        )


APP = AuthMiddlewareStack(AuthConsumer.as_asgi())
SYNC_APP = AuthMiddlewareStack(SyncAuthConsumer.as_asgi())


async def make_user(username: str = "alice") -> User:
    # The async ORM's thread may hold a connection that the previous test's
    # teardown ended (tests/conftest.py); replace it, as consumers do.
    await aclose_old_connections()
    return await User.objects.acreate_user(username, password=PASSWORD)


async def logged_in_client(username: str = "alice") -> AsyncClient:
    """Log in through Django's login machinery, as a browser's POST would."""
    client = AsyncClient()
    assert await client.alogin(username=username, password=PASSWORD)
    return client


def cookie_of(client: AsyncClient) -> str:
    return str(client.cookies["sessionid"].value)


async def ask(communicator: Any, op: str = "whoami", **content: Any) -> dict[str, Any]:
    await communicator.send_json_to({"op": op, **content})
    answer: dict[str, Any] = await communicator.receive_json_from(timeout=5)
    return answer


async def socket(
    websocket_communicator: Any, key: str | None, app: Any = APP, path: str = "/ws/"
) -> Any:
    headers = [(b"cookie", f"sessionid={key}".encode())] if key else []
    communicator = websocket_communicator(app, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def http_view(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/whoami/")
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def set_cookie_headers(communicator: Any) -> list[bytes]:
    return [
        value
        for name, value in communicator.response_headers or ()
        if name == b"set-cookie"
    ]


async def test_a_user_logged_in_over_http_is_the_sockets_user(
    database: str, engine: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await logged_in_client()

    communicator = await socket(websocket_communicator, cookie_of(client))

    assert (await ask(communicator))["user"] == "alice"


async def test_a_sync_consumer_reads_the_user_loaded_at_connect(
    database: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await logged_in_client()

    communicator = await socket(websocket_communicator, cookie_of(client), SYNC_APP)

    assert (await ask(communicator))["user"] == "alice"


async def test_no_cookie_gives_the_anonymous_user(
    database: str, websocket_communicator: Any
) -> None:
    communicator = await socket(websocket_communicator, None)

    answer = await ask(communicator)

    assert answer["user"] == ""
    assert set_cookie_headers(communicator) == []


async def test_an_expired_session_gives_the_anonymous_user(
    database: str, engine: str, settings: Any, websocket_communicator: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    store = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"]).SessionStore
    session: SessionBase = store(cookie_of(client))
    await session.aset_expiry(-1)
    await session.asave()

    communicator = await socket(websocket_communicator, cookie_of(client))

    assert (await ask(communicator))["user"] == ""


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda key: "z" * 32, id="random-key"),
        pytest.param(
            lambda key: key[:-1] + ("a" if key[-1] != "a" else "b"), id="one-char"
        ),
        pytest.param(lambda key: key + "'; DROP TABLE", id="garbage"),
    ],
)
async def test_a_forged_cookie_gives_the_anonymous_user_and_is_deleted(
    database: str, engine: str, websocket_communicator: Any, forge: Any
) -> None:
    await make_user()
    client = await logged_in_client()

    communicator = await socket(websocket_communicator, forge(cookie_of(client)))

    assert (await ask(communicator))["user"] == ""
    [deleted] = set_cookie_headers(communicator)
    assert deleted.startswith(b'sessionid=""')
    assert b"Max-Age=0" in deleted


async def test_tampered_session_data_gives_the_anonymous_user(
    database: str, websocket_communicator: Any
) -> None:
    from django.contrib.sessions.models import Session

    await make_user()
    client = await logged_in_client()
    row = await Session.objects.aget(session_key=cookie_of(client))
    row.session_data = row.session_data[:-3] + "AAA"
    await row.asave()

    communicator = await socket(websocket_communicator, cookie_of(client))

    assert (await ask(communicator))["user"] == ""


async def test_a_rotated_secret_key_without_fallback_logs_the_socket_out(
    database: str, engine: str, settings: Any, websocket_communicator: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    settings.SECRET_KEY = "a-brand-new-secret-key-nobody-knew-before"
    settings.SECRET_KEY_FALLBACKS = []

    communicator = await socket(websocket_communicator, cookie_of(client))

    assert (await ask(communicator))["user"] == ""


async def test_a_secret_key_in_the_fallbacks_keeps_the_user_logged_in(
    database: str, engine: str, settings: Any, websocket_communicator: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    old_key = cookie_of(client)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key-nobody-knew-before"

    communicator = await socket(websocket_communicator, old_key)

    assert (await ask(communicator))["user"] == "alice"
    # Django upgrades the session to the new key and rotates the session key;
    # the new cookie travels with the accept, and HTTP agrees with it.
    [cookie] = set_cookie_headers(communicator)
    new_key = cookie.split(b";")[0].removeprefix(b"sessionid=").decode()
    assert new_key != old_key
    client.cookies["sessionid"] = new_key
    settings.SECRET_KEY_FALLBACKS = []
    assert (await http_view(client))["user"] == "alice"


@pytest.mark.parametrize("app", [APP, SYNC_APP], ids=["async", "sync"])
async def test_a_session_changed_in_a_consumer_is_seen_by_the_next_http_request(
    database: str, engine: str, websocket_communicator: Any, app: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    communicator = await socket(websocket_communicator, cookie_of(client), app)

    assert (await ask(communicator, "set", value=1))["x"] == 1

    assert await http_view(client) == {"user": "alice", "cart": None, "x": 1}


async def exchange(client: AsyncClient, frame: dict[str, Any], **headers: str) -> Any:
    """POST the frame's token to its URL, as realtime.js does."""
    return await client.post(
        frame["url"], headers={TOKEN_HEADER: frame["token"], **headers}
    )


async def session_exists(key: str) -> bool:
    store = __import__(
        django_settings.SESSION_ENGINE, fromlist=["SessionStore"]
    ).SessionStore
    session: SessionBase = store(key)
    await session.akeys()
    return session.session_key is not None


async def anonymous_client() -> AsyncClient:
    """Return a client holding the cookie of an anonymous session."""
    client = AsyncClient()
    await client.get("/visit/")
    return client


@pytest.mark.parametrize("app", [APP, SYNC_APP], ids=["async", "sync"])
async def test_a_login_after_accept_rotates_the_key_and_hands_the_cookie_over(
    database: str, engine: str, websocket_communicator: Any, app: Any
) -> None:
    user = await make_user()
    client = await anonymous_client()
    old_key = cookie_of(client)
    communicator = await socket(websocket_communicator, old_key, app)
    assert (await ask(communicator))["user"] == ""

    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    assert answer["user"] == "alice"
    new_key = answer["key"]
    assert new_key != old_key
    assert not await session_exists(old_key)
    frame = answer["frame"]
    assert frame == {
        "kind": "session",
        "token": frame["token"],
        "url": "/realtime/session/",
    }
    response = await exchange(client, frame)
    assert response.status_code == 204
    assert cookie_of(client) == new_key
    assert await http_view(client) == {"user": "alice", "cart": "apples", "x": None}
    # The socket and HTTP share the session from now on.
    await ask(communicator, "set", value=2)
    assert (await http_view(client))["x"] == 2
    await user.arefresh_from_db()
    assert user.last_login is not None


async def test_the_exchanged_cookie_follows_the_session_cookie_settings(
    database: str, websocket_communicator: Any, settings: Any
) -> None:
    settings.SESSION_COOKIE_SECURE = True
    settings.SESSION_COOKIE_SAMESITE = "Strict"
    settings.SESSION_COOKIE_PATH = "/app/"
    settings.SESSION_COOKIE_DOMAIN = "testserver"
    settings.SESSION_COOKIE_AGE = 600
    await make_user()
    client = AsyncClient()
    communicator = await socket(websocket_communicator, None)
    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    response = await exchange(client, answer["frame"])

    assert response.status_code == 204
    cookie = response.cookies["sessionid"]
    assert cookie.value == answer["key"]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/app/"
    assert cookie["domain"] == "testserver"
    assert cookie["max-age"] == 600
    assert response["Cache-Control"] == "no-store"


async def test_a_token_is_used_up_by_its_first_exchange(
    database: str, engine: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(client))
    answer = await ask(communicator, "login", username="alice", password=PASSWORD)
    assert (await exchange(client, answer["frame"])).status_code == 204

    again = await exchange(client, answer["frame"])

    assert again.status_code == 403
    assert again.json()["code"] == "invalid_token"
    assert cookie_of(client) == answer["key"]


async def test_an_expired_token_is_refused(
    database: str, engine: str, websocket_communicator: Any, settings: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    old_key = cookie_of(client)
    communicator = await socket(websocket_communicator, old_key)
    answer = await ask(communicator, "login", username="alice", password=PASSWORD)
    store = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"]).SessionStore
    token: SessionBase = store(answer["frame"]["token"])
    await token.aset_expiry(-1)
    await token.asave()

    response = await exchange(client, answer["frame"])

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_token"
    assert cookie_of(client) == old_key


async def test_an_unknown_token_is_refused(database: str) -> None:
    client = await anonymous_client()

    response = await exchange(client, {"url": "/realtime/session/", "token": "z" * 32})

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_token"


async def test_a_token_from_another_browsers_socket_is_refused(
    database: str, websocket_communicator: Any
) -> None:
    await make_user("mallory")
    attacker = await anonymous_client()
    victim = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(attacker))
    answer = await ask(communicator, "login", username="mallory", password=PASSWORD)
    victim_key = cookie_of(victim)

    response = await exchange(victim, answer["frame"])

    assert response.status_code == 403
    assert response.json()["code"] == "wrong_session"
    assert cookie_of(victim) == victim_key
    assert (await http_view(victim))["user"] == ""


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        pytest.param(
            {"Origin": "https://evil.example"}, 403, "cross_origin", id="origin"
        ),
        pytest.param({TOKEN_HEADER: ""}, 400, "missing_token", id="no-header"),
    ],
)
async def test_a_cross_site_exchange_is_refused(
    database: str,
    websocket_communicator: Any,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    await make_user()
    client = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(client))
    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    response = await exchange(client, answer["frame"], **headers)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert (await http_view(client))["user"] == ""


async def test_an_exchange_from_the_sites_own_or_a_trusted_origin_is_accepted(
    database: str, websocket_communicator: Any, settings: Any
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    await make_user()
    for origin in ("http://testserver", "https://app.example.com"):
        client = await anonymous_client()
        communicator = await socket(websocket_communicator, cookie_of(client))
        answer = await ask(communicator, "login", username="alice", password=PASSWORD)

        response = await exchange(client, answer["frame"], Origin=origin)

        assert response.status_code == 204, origin


async def test_the_exchange_view_takes_only_post(database: str) -> None:
    response = await AsyncClient().get("/realtime/session/")

    assert response.status_code == 405


async def test_a_token_of_a_session_that_ended_meanwhile_is_refused(
    database: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(client))
    answer = await ask(communicator, "login", username="alice", password=PASSWORD)
    await ask(communicator, "logout")

    response = await exchange(client, answer["frame"])

    assert response.status_code == 403
    assert response.json()["code"] == "session_gone"


async def test_a_second_login_on_the_connection_hands_over_the_newest_session(
    database: str, websocket_communicator: Any
) -> None:
    await make_user("alice")
    await make_user("bob")
    client = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(client))
    first = await ask(communicator, "login", username="alice", password=PASSWORD)
    second = await ask(communicator, "login", username="bob", password=PASSWORD)

    # The page exchanges the tokens in the order they came; the first names
    # a session the second login flushed.
    assert (await exchange(client, first["frame"])).json()["code"] == "session_gone"
    assert (await exchange(client, second["frame"])).status_code == 204

    assert cookie_of(client) == second["key"]
    assert (await http_view(client))["user"] == "bob"


async def test_the_exchange_under_save_every_request_sets_the_new_cookie(
    database: str, websocket_communicator: Any, settings: Any
) -> None:
    settings.SESSION_SAVE_EVERY_REQUEST = True
    await make_user()
    client = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(client))
    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    response = await exchange(client, answer["frame"])

    assert response.status_code == 204
    assert cookie_of(client) == answer["key"]
    assert (await http_view(client))["user"] == "alice"


async def test_a_login_as_another_user_flushes_the_session(
    database: str, websocket_communicator: Any
) -> None:
    await make_user("alice")
    await make_user("bob")
    client = await logged_in_client("alice")
    alices_key = cookie_of(client)
    communicator = await socket(websocket_communicator, alices_key)
    await ask(communicator, "set", value="alice's secret")

    answer = await ask(communicator, "login", username="bob", password=PASSWORD)

    assert (answer["user"], answer["cart"], answer["x"]) == ("bob", None, None)
    assert answer["key"] != alices_key
    assert not await session_exists(alices_key)
    assert (await exchange(client, answer["frame"])).status_code == 204
    assert await http_view(client) == {"user": "bob", "cart": None, "x": None}


async def test_a_login_again_as_the_same_user_keeps_the_session(
    database: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    key = cookie_of(client)
    communicator = await socket(websocket_communicator, key)

    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    assert (answer["key"], answer["frame"]) == (key, None)


@pytest.mark.parametrize("app", [APP, SYNC_APP], ids=["async", "sync"])
async def test_a_login_with_rotate_false_keeps_the_cookies_key(
    database: str, engine: str, websocket_communicator: Any, app: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    key = cookie_of(client)
    communicator = await socket(websocket_communicator, key, app)

    await communicator.send_json_to(
        {"op": "login", "username": "alice", "password": PASSWORD, "rotate": False}
    )
    answer = await communicator.receive_json_from(timeout=5)

    assert (answer["user"], answer["key"], answer["frame"]) == ("alice", key, None)
    assert cookie_of(client) == key
    assert await http_view(client) == {"user": "alice", "cart": "apples", "x": None}


async def test_rotate_false_for_another_user_empties_the_session_but_keeps_its_key(
    database: str, websocket_communicator: Any
) -> None:
    await make_user("alice")
    await make_user("bob")
    client = await logged_in_client("alice")
    communicator = await socket(websocket_communicator, cookie_of(client))
    await ask(communicator, "set", value="alice's secret")

    answer = await ask(
        communicator, "login", username="bob", password=PASSWORD, rotate=False
    )

    assert (answer["user"], answer["cart"], answer["x"]) == ("bob", None, None)
    assert answer["key"] == cookie_of(client)
    assert await http_view(client) == {"user": "bob", "cart": None, "x": None}


async def test_a_login_before_accept_sends_the_new_session_cookie_with_the_accept(
    database: str, websocket_communicator: Any
) -> None:
    await make_user()

    communicator = await socket(websocket_communicator, None, path="/ws/?login=alice")

    [cookie] = set_cookie_headers(communicator)
    assert b"HttpOnly" in cookie
    assert b"Max-Age=1209600" in cookie
    client = AsyncClient()
    client.cookies["sessionid"] = cookie.split(b";")[0].split(b"=")[1].decode()
    assert (await http_view(client))["user"] == "alice"


async def test_a_login_before_accept_rotates_the_key_of_the_cookie_it_came_with(
    database: str, engine: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    old_key = cookie_of(client)

    communicator = await socket(
        websocket_communicator, old_key, path="/ws/?login=alice"
    )

    [cookie] = set_cookie_headers(communicator)
    new_key = cookie.split(b";")[0].removeprefix(b"sessionid=").decode()
    assert new_key not in ("", old_key)
    assert not await session_exists(old_key)
    assert (await ask(communicator))["key"] == new_key
    client.cookies["sessionid"] = new_key
    assert await http_view(client) == {"user": "alice", "cart": "apples", "x": None}


async def test_a_login_before_accept_on_daphne_hands_the_cookie_over_after_it(
    database: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    communicator = websocket_communicator(
        APP,
        "/ws/?login=alice",
        headers=[(b"cookie", f"sessionid={cookie_of(client)}".encode())],
        spec_version="2.0",
    )
    assert (await communicator.connect(timeout=5))[0]

    frame = await communicator.receive_json_from(timeout=5)

    assert frame["kind"] == "session"
    assert (await exchange(client, frame)).status_code == 204
    assert cookie_of(client) == (await ask(communicator))["key"]
    assert (await http_view(client))["user"] == "alice"


async def test_a_login_with_rotate_false_after_accept_without_a_cookie_warns(
    database: str, websocket_communicator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await make_user()
    communicator = await socket(websocket_communicator, None)

    with caplog.at_level(logging.WARNING, logger="django_realtime.auth"):
        answer = await ask(
            communicator, "login", username="alice", password=PASSWORD, rotate=False
        )

    assert answer["user"] == "alice"
    [record] = [r for r in caplog.records if r.name == "django_realtime.auth"]
    assert "no cookie" in record.getMessage()


async def test_a_login_after_accept_without_a_cookie_hands_the_new_one_over(
    database: str, websocket_communicator: Any
) -> None:
    await make_user()
    communicator = await socket(websocket_communicator, None)

    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    client = AsyncClient()
    assert (await exchange(client, answer["frame"])).status_code == 204
    assert cookie_of(client) == answer["key"]
    assert (await http_view(client))["user"] == "alice"


class LoginReporter(AsyncJsonWebsocketConsumer):
    """Log in the user named by each frame; report what happened."""

    channel_layer_alias = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        error = None
        try:
            await login(self.scope, await User.objects.aget(username=content["user"]))
        except ImproperlyConfigured as exc:
            error = str(exc)
        await self.send_json(
            {
                "error": error,
                "user": self.scope["user"].get_username(),
                "key": self.scope["session"].session_key,
            }
        )


async def test_a_login_that_needs_the_exchange_view_says_so_before_changing_anything(
    database: str, websocket_communicator: Any, settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.urls"
    await make_user()
    store = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"]).SessionStore
    anonymous: SessionBase = store()
    await anonymous.aset("cart", "apples")
    await anonymous.asave()
    key = anonymous.session_key
    app = AuthMiddlewareStack(LoginReporter.as_asgi())
    communicator = await socket(websocket_communicator, key, app)

    await communicator.send_json_to({"user": "alice"})
    answer = await communicator.receive_json_from(timeout=5)

    assert "path('realtime/session/', take_session_cookie" in answer["error"]
    assert (answer["key"], answer["user"]) == (key, "")
    assert await session_exists(key)
    assert await store(key).aget("_auth_user_id") is None


@pytest.mark.parametrize("app", [APP, SYNC_APP], ids=["async", "sync"])
async def test_a_logout_in_a_consumer_logs_the_cookie_out_for_http_too(
    database: str, engine: str, websocket_communicator: Any, app: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    communicator = await socket(websocket_communicator, cookie_of(client), app)

    assert (await ask(communicator, "logout"))["user"] == ""

    assert (await http_view(client))["user"] == ""


async def test_login_needs_the_backend_when_several_are_configured(
    database: str, settings: Any
) -> None:
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.AllowAllUsersModelBackend",
    ]
    user = await make_user()
    scope = await scope_through(SessionMiddlewareStack)

    with pytest.raises(ValueError, match="2 are configured"):
        await login(scope, user)
    await login(scope, user, backend=settings.AUTHENTICATION_BACKENDS[1])
    assert scope["user"] == user
    assert (await get_user(scope)) == user


async def test_get_user_without_a_session_says_which_middleware_is_missing(
    database: str,
) -> None:
    with pytest.raises(ValueError, match="AuthMiddlewareStack"):
        await get_user({"type": "websocket"})


async def scope_through(stack: Any) -> dict[str, Any]:
    """Return the scope an HTTP request gets behind ``stack``."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    from django_realtime.testing import HttpCommunicator

    await HttpCommunicator(stack(app), "GET", "/").wait()
    return seen


async def test_login_without_a_user_logs_in_the_user_of_the_scope(
    database: str,
) -> None:
    user = await make_user()
    scope = await scope_through(SessionMiddlewareStack)
    scope["user"] = user

    await login(scope, None)

    assert await get_user(scope) == user
    assert scope["user"] == user


@pytest.mark.parametrize(
    "scope_user",
    [pytest.param(None, id="none"), pytest.param(AnonymousUser(), id="anonymous")],
)
async def test_login_without_a_user_and_none_in_the_scope_raises_value_error(
    database: str, scope_user: Any
) -> None:
    scope = await scope_through(SessionMiddlewareStack)
    if scope_user is not None:
        scope["user"] = scope_user

    with pytest.raises(ValueError, match=r"scope\['user'\]"):
        await login(scope, None)
    assert scope["session"].session_key is None


# A StreamConsumer: the session middleware sends the session frame itself.


class AccountStream(StreamConsumer):
    async def connect(self) -> None:
        query = self.scope["query_string"].decode()
        if query.startswith("login="):
            user = await User.objects.aget(username=query.removeprefix("login="))
            assert await login(self.scope, user) is None
        await self.accept()

    async def request_login(self, data: Any) -> Any:
        user = await User.objects.aget(username=data)
        assert await login(self.scope, user) is None
        return self.scope["session"].session_key

    async def request_key(self, data: Any) -> Any:
        return self.scope["session"].session_key


STREAM_APP = AuthMiddlewareStack(AccountStream.as_asgi())


async def test_a_stream_connection_gets_the_session_frame_before_the_logins_reply(
    database: str, engine: str, websocket_communicator: Any
) -> None:
    await make_user()
    client = await anonymous_client()
    communicator = await socket(websocket_communicator, cookie_of(client), STREAM_APP)

    await communicator.send_json_to(
        {"kind": "request", "id": 1, "type": "login", "data": "alice"}
    )
    frame = await communicator.receive_json_from(timeout=5)
    reply = await communicator.receive_json_from(timeout=5)

    assert frame["kind"] == "session"
    assert reply["kind"] == "reply"
    assert (await exchange(client, frame)).status_code == 204
    assert cookie_of(client) == reply["data"]
    assert (await http_view(client))["user"] == "alice"


@pytest.mark.parametrize("spec_version", ["2.0", "2.3"])
async def test_a_stream_connection_that_logs_in_before_accept_gets_the_cookie(
    database: str, websocket_communicator: Any, spec_version: str
) -> None:
    await make_user()
    client = await anonymous_client()
    old_key = cookie_of(client)
    communicator = websocket_communicator(
        STREAM_APP,
        "/ws/?login=alice",
        headers=[(b"cookie", f"sessionid={old_key}".encode())],
        spec_version=spec_version,
    )
    assert (await communicator.connect(timeout=5))[0]

    if spec_version == "2.0":  # daphne: the accept's headers do not arrive
        frame = await communicator.receive_json_from(timeout=5)
        assert frame["kind"] == "session"
        assert (await exchange(client, frame)).status_code == 204
    else:
        [cookie] = set_cookie_headers(communicator)
        client.cookies["sessionid"] = (
            cookie.split(b";")[0].removeprefix(b"sessionid=").decode()
        )
    await communicator.send_json_to({"kind": "request", "id": 1, "type": "key"})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["data"] == cookie_of(client) != old_key
    assert (await http_view(client))["user"] == "alice"


async def test_a_key_rotated_at_connect_on_daphne_reaches_a_stream_page_as_a_frame(
    database: str, websocket_communicator: Any, settings: Any
) -> None:
    await make_user()
    client = await logged_in_client()
    old_key = cookie_of(client)
    # get_user() upgrades a session signed under a fallback secret and
    # rotates its key, before the handshake is answered.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key-nobody-knew-before"
    communicator = websocket_communicator(
        STREAM_APP,
        "/ws/",
        headers=[(b"cookie", f"sessionid={old_key}".encode())],
        spec_version="2.0",
    )
    assert (await communicator.connect(timeout=5))[0]

    frame = await communicator.receive_json_from(timeout=5)

    assert frame["kind"] == "session"
    assert (await exchange(client, frame)).status_code == 204
    assert cookie_of(client) != old_key
    settings.SECRET_KEY_FALLBACKS = []
    assert (await http_view(client))["user"] == "alice"
