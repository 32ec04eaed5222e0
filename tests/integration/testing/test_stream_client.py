"""StreamClient, flush_streams and drop_redis_connections: recovery in tests."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import path
from redis.asyncio import Redis

from django_realtime.auth import AuthMiddlewareStack, login
from django_realtime.middleware.handoff import take_session_cookie
from django_realtime.streams import (
    RequestError,
    StreamConsumer,
    apublish,
    set_stream_store,
)
from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable
from django_realtime.testing import (
    RequestFailed,
    StreamClient,
    drop_redis_connections,
    flush_streams,
)

pytestmark = pytest.mark.timeout(10)


class Open(StreamConsumer):
    async def authorize_stream(self, stream: str) -> bool:
        return True

    async def request_fail(self, data: Any) -> None:
        raise RequestError("nope", "Not today.")


@pytest.fixture
def redis_required() -> None:
    """Skip (or under CI=true, fail) when the Redis server is down."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is down ({exc}); CI=true requires it.")
        pytest.skip(f"Redis is down ({exc}).")


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    fresh = MemoryHistoryStore(PolicyTable({"*": {"max_count": 20}}))
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


async def test_a_dropped_client_resumes_and_gets_everything_once_in_order() -> None:
    client = StreamClient(Open.as_asgi(), "/ws/")
    await client.connect()
    await client.subscribe("news")
    for n in range(5):
        await apublish("news", n)
    await client.wait_for("news", 5)
    await client.drop()
    for n in range(5, 10):
        await apublish("news", n)
    (resumed,) = await client.reconnect()
    assert resumed["recovered"] is True
    assert resumed["replayed"] == 5
    for n in range(10, 12):
        await apublish("news", n)
    assert await client.wait_for("news", 12) == list(range(12))
    assert client.losses == []
    await client.close()


async def test_a_flushed_store_is_reported_as_a_loss_on_resume() -> None:
    client = StreamClient(Open.as_asgi(), "/ws/")
    await client.connect()
    await client.subscribe("news")
    await apublish("news", "before")
    await client.wait_for("news", 1)
    await client.drop()
    await flush_streams()
    await apublish("news", "after the flush")
    (resumed,) = await client.reconnect()
    assert resumed["recovered"] is False
    assert client.losses == [resumed]
    assert resumed["reason"] == "epoch_changed"
    await apublish("news", "next")
    assert await client.wait_for("news", 2) == ["before", "next"]
    await client.close()


async def test_request_errors_raise_request_failed() -> None:
    client = StreamClient(Open.as_asgi(), "/ws/")
    await client.connect()
    with pytest.raises(RequestFailed, match=r"nope: Not today\.") as caught:
        await client.request("fail")
    assert caught.value.code == "nope"
    await client.close()


async def test_drop_redis_connections_closes_the_named_clients_only(
    redis_required: None,
) -> None:
    name = f"drt-victim-{uuid.uuid4().hex[:8]}"
    victim = Redis.from_url("redis://127.0.0.1:6379")
    bystander = Redis.from_url("redis://127.0.0.1:6379")
    try:
        await victim.client_setname(name)
        await bystander.ping()
        assert await drop_redis_connections(name_prefix=name) == 1
        names = [info.get("name") for info in await bystander.client_list()]
        assert name not in names
    finally:
        await victim.aclose()
        await bystander.aclose()


class LoginStream(Open):
    async def request_login(self, data: Any) -> str:
        user = await User.objects.acreate(username=data)
        await login(self.scope, user)
        return "ok"


urlpatterns = [path("realtime/session/", take_session_cookie, name="realtime-session")]


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
async def test_session_frames_are_recorded_not_mistaken_for_protocol_errors() -> None:
    client = StreamClient(AuthMiddlewareStack(LoginStream.as_asgi()), "/ws/")
    await client.connect()

    assert await client.request("login", "alice") == "ok"

    [frame] = client.sessions
    assert frame["kind"] == "session"
    assert frame["token"]
    await client.close()
