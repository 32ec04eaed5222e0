"""The connection's user: a real HTTP login, then a WebSocket behind the stack.

Every test runs on SQLite and on PostgreSQL (the ``database`` fixture), and
the central ones on every server-side session engine Django ships.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import aauthenticate
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient
from django.urls import path

from django_realtime.auth import AuthMiddlewareStack, get_user, login, logout
from django_realtime.consumers import AsyncJsonWebsocketConsumer, JsonWebsocketConsumer
from django_realtime.sessions import SessionMiddlewareStack
from tests.session_databases import database, engine, uses_both_databases

__all__ = ["database", "engine"]  # fixtures used by name

pytestmark = [pytest.mark.timeout(30), uses_both_databases, pytest.mark.urls(__name__)]

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


urlpatterns = [path("visit/", visit), path("whoami/", whoami)]


# Socket side: consumers that report and change the connection's user.


class AuthConsumer(AsyncJsonWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self) -> None:
        query = self.scope["query_string"].decode()
        if query.startswith("login="):
            user = await User.objects.aget(username=query.removeprefix("login="))
            await login(self.scope, user)
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        session = self.scope["session"]
        op = content["op"]
        if op == "login":
            user = await aauthenticate(
                username=content["username"], password=content["password"]
            )
            assert user is not None
            await login(self.scope, user)
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
            }
        )


class SyncAuthConsumer(JsonWebsocketConsumer):
    channel_layer_alias = None

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        session = self.scope["session"]
        op = content["op"]
        if op == "login":
            user = User.objects.get(username=content["username"])
            async_to_sync(login)(self.scope, user)
        elif op == "logout":
            async_to_sync(logout)(self.scope)
        elif op == "set":
            session["x"] = content["value"]
            session.save()
        self.send_json(
            {"user": self.scope["user"].get_username(), "x": session.get("x")}
        )


APP = AuthMiddlewareStack(AuthConsumer.as_asgi())
SYNC_APP = AuthMiddlewareStack(SyncAuthConsumer.as_asgi())


async def make_user(username: str = "alice") -> User:
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


@pytest.mark.parametrize("app", [APP, SYNC_APP], ids=["async", "sync"])
async def test_a_login_in_a_consumer_keeps_the_cookie_and_is_seen_by_http(
    database: str, engine: str, websocket_communicator: Any, app: Any
) -> None:
    user = await make_user()
    client = AsyncClient()
    await client.get("/visit/")
    key = cookie_of(client)
    communicator = await socket(websocket_communicator, key, app)
    assert (await ask(communicator))["user"] == ""

    answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    assert answer["user"] == "alice"
    assert cookie_of(client) == key
    assert await http_view(client) == {"user": "alice", "cart": "apples", "x": None}
    await user.arefresh_from_db()
    assert user.last_login is not None


async def test_a_login_as_another_user_empties_the_session_but_keeps_its_key(
    database: str, websocket_communicator: Any
) -> None:
    await make_user("alice")
    await make_user("bob")
    client = await logged_in_client("alice")
    communicator = await socket(websocket_communicator, cookie_of(client))
    await ask(communicator, "set", value="alice's secret")

    answer = await ask(communicator, "login", username="bob", password=PASSWORD)

    assert answer == {"user": "bob", "cart": None, "x": None}
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


async def test_a_login_after_accept_without_a_cookie_warns_that_http_will_not_see_it(
    database: str, websocket_communicator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await make_user()
    communicator = await socket(websocket_communicator, None)

    with caplog.at_level(logging.WARNING, logger="django_realtime.auth"):
        answer = await ask(communicator, "login", username="alice", password=PASSWORD)

    assert answer["user"] == "alice"
    [record] = [r for r in caplog.records if r.name == "django_realtime.auth"]
    assert "no cookie" in record.getMessage()


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
    communicator_scope: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        communicator_scope.update(scope)

    from django_realtime.testing import HttpCommunicator

    await HttpCommunicator(SessionMiddlewareStack(app), "GET", "/").wait()
    scope = communicator_scope

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
