"""ConnectionLimits: connections per process and per client, handshakes, rates."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.consumers import AsyncWebsocketConsumer
from django_realtime.middleware import limits
from django_realtime.middleware.clients import ClientAddress, ClientCounter, Refusal
from django_realtime.middleware.limits import ConnectionLimits, TokenBucket
from django_realtime.testing import HttpCommunicator, WebsocketCommunicator

pytestmark = pytest.mark.timeout(10)


class Echo(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def receive(
        self, text_data: str | None = None, bytes_data: Any = None
    ) -> None:
        await self.send(text_data=text_data)


class SlowToAnswer(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self) -> None:
        await asyncio.sleep(5)
        await self.accept()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True
    assert bucket.take(0.5) is False
    assert [bucket.take(100) for _ in range(4)] == [True, True, True, False]


def test_limits_are_checked_when_configured() -> None:
    with pytest.raises(ValueError, match="policy"):
        ConnectionLimits(Echo.as_asgi(), policy="ignore")
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(Echo.as_asgi(), max_connections=0)
    with pytest.raises(ValueError, match="rate > 0"):
        ConnectionLimits(Echo.as_asgi(), rate=0)


async def connect(app: Any) -> tuple[WebsocketCommunicator, bool, Any]:
    communicator = WebsocketCommunicator(app, "/ws/")
    accepted, detail = await communicator.connect()
    return communicator, accepted, detail


async def test_handshakes_over_max_connections_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(Echo.as_asgi(), max_connections=2)
    before = limits.stats.refused_over_capacity
    first, ok1, _ = await connect(app)
    second, ok2, _ = await connect(app)
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        _third, ok3, code = await connect(app)
    assert (ok1, ok2, ok3, code) == (True, True, False, 1013)
    assert limits.stats.refused_over_capacity == before + 1
    assert "holds 2 connections, its max_connections" in caplog.text
    await first.disconnect()
    fourth, ok4, _ = await connect(app)
    assert ok4
    await second.disconnect()
    await fourth.disconnect()


async def test_an_unanswered_handshake_is_refused_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(SlowToAnswer.as_asgi(), handshake_timeout=0.1)
    before = limits.stats.handshake_timeouts
    communicator = WebsocketCommunicator(app, "/ws/")
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        accepted, code = await communicator.connect(timeout=2)
    assert (accepted, code) == (False, 1013)
    assert limits.stats.handshake_timeouts == before + 1
    assert "neither accepted nor refused it within 0.1 s" in caplog.text
    communicator.stop()


async def test_a_connection_over_its_rate_is_closed_with_4029(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    app = ConnectionLimits(Echo.as_asgi(), rate=5, burst=3, clock=clock)
    communicator, accepted, _ = await connect(app)
    assert accepted
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        for n in range(4):
            await communicator.send_to(text_data=str(n))
        echoed = [await communicator.receive_from() for _ in range(3)]
        closed = await communicator.receive_output()
    assert echoed == ["0", "1", "2"]
    assert closed == {"type": "websocket.close", "code": 4029}
    assert "with 4029: over 5 messages a second (bursts of 3)" in caplog.text
    await communicator.wait()


async def test_the_drop_policy_drops_and_counts_what_is_over_the_rate() -> None:
    clock = Clock()
    app = ConnectionLimits(Echo.as_asgi(), rate=1, burst=2, policy="drop", clock=clock)
    before = limits.stats.rate_limited_drops
    communicator, accepted, _ = await connect(app)
    assert accepted
    for n in range(4):
        await communicator.send_to(text_data=str(n))
    assert [await communicator.receive_from() for _ in range(2)] == ["0", "1"]
    await communicator.receive_nothing(0.05)
    assert limits.stats.rate_limited_drops == before + 2
    clock.now += 1
    await communicator.send_to(text_data="later")
    assert await communicator.receive_from() == "later"
    await communicator.disconnect()


async def test_nested_limits_count_a_connection_once_and_apply_each_rate() -> None:
    clock = Clock()
    inner = ConnectionLimits(Echo.as_asgi(), rate=1, burst=1, clock=clock)
    app = ConnectionLimits(inner, max_connections=2)
    open_before = limits.stats.open
    first, ok1, _ = await connect(app)
    second, ok2, _ = await connect(app)
    assert limits.stats.open == open_before + 2
    _third, ok3, code = await connect(app)
    assert (ok1, ok2, ok3, code) == (True, True, False, 1013)
    await first.send_to(text_data="a")
    assert await first.receive_from() == "a"
    await first.send_to(text_data="b")  # the inner rate: one a second
    assert await first.receive_output() == {"type": "websocket.close", "code": 4029}
    await first.wait()
    await second.disconnect()
    assert limits.stats.open == open_before


async def test_other_connections_types_pass_untouched() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = await HttpCommunicator(
        ConnectionLimits(app, max_connections=1), "GET", "/"
    ).get_response()
    assert response["status"] == 204


# Per-client limits: where the client address comes from (pure).


def scope_from(
    peer: str | None = "192.0.2.1", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {
        "type": "websocket",
        "client": None if peer is None else (peer, 50000),
        "headers": headers or [],
    }


XFF = b"x-forwarded-for"


def test_the_client_address_is_the_peer_s_by_default() -> None:
    spoofed = scope_from("192.0.2.1", [(XFF, b"203.0.113.7")])

    assert ClientAddress().of(spoofed) == "192.0.2.1"


@pytest.mark.parametrize(
    ("trusted", "headers", "address"),
    [
        (1, [(XFF, b"203.0.113.7")], "203.0.113.7"),
        (1, [(XFF, b"198.51.100.66, 203.0.113.7")], "203.0.113.7"),
        (2, [(XFF, b"198.51.100.66, 203.0.113.7, 10.0.0.2")], "203.0.113.7"),
        (3, [(XFF, b"203.0.113.7, 10.0.0.2")], "203.0.113.7"),
        (1, [(XFF, b"198.51.100.66"), (XFF, b"203.0.113.7")], "203.0.113.7"),
        (1, [(XFF, b" 203.0.113.7:5678 ")], "203.0.113.7"),
        (1, [(XFF, b"[2001:db8::1]:443")], "2001:db8::/64"),
        (1, [(XFF, b"::ffff:203.0.113.7")], "203.0.113.7"),
        (1, [(XFF, b"unknown")], "192.0.2.1"),
        (1, [(XFF, b"")], "192.0.2.1"),
        (1, [], "192.0.2.1"),
    ],
)
def test_a_proxy_header_gives_the_address_the_outermost_trusted_proxy_saw(
    trusted: int, headers: list[tuple[bytes, bytes]], address: str
) -> None:
    where = ClientAddress(header="X-Forwarded-For", trusted_proxies=trusted)

    assert where.of(scope_from("192.0.2.1", headers)) == address


def test_a_single_address_header_such_as_x_real_ip_is_read_whole() -> None:
    where = ClientAddress(header="X-Real-IP")

    assert where.of(scope_from(headers=[(b"x-real-ip", b"203.0.113.7")])) == (
        "203.0.113.7"
    )


def test_ipv6_clients_are_counted_by_network() -> None:
    by_64 = ClientAddress()
    each = ClientAddress(ipv6_prefix=128)

    assert by_64.of(scope_from("2001:db8:1:2::5")) == "2001:db8:1:2::/64"
    assert by_64.of(scope_from("2001:db8:1:2:ffff::1")) == "2001:db8:1:2::/64"
    assert each.of(scope_from("2001:db8:1:2::5")) == "2001:db8:1:2::5"


def test_a_peer_that_is_not_an_ip_address_is_its_own_key() -> None:
    assert ClientAddress().of(scope_from("/run/app.sock")) == "/run/app.sock"
    assert ClientAddress().of(scope_from(None)) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"header": ""}, {"trusted_proxies": 0}, {"ipv6_prefix": 129}],
)
def test_client_address_options_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Expected"):
        ClientAddress(**kwargs)


# Per-client counts (pure).


def test_a_client_counter_refuses_at_the_limit_and_frees_on_close() -> None:
    counter = ClientCounter(limit=2)

    assert counter.open("a") is None
    assert counter.open("a") is None
    refusal = counter.open("a")
    assert counter.open("b") is None

    assert refusal == Refusal(client="a", held=2, in_a_row=1, log=True)
    counter.close("a")
    assert counter.open("a") is None


def test_refusals_in_a_row_are_logged_at_powers_of_ten() -> None:
    counter = ClientCounter(limit=1)
    counter.open("a")

    logged = [n for n in range(1, 1001) if (r := counter.open("a")) and r.log]

    assert logged == [1, 10, 100, 1000]


def test_a_row_of_refusals_ends_when_the_client_gets_a_connection() -> None:
    counter = ClientCounter(limit=1)
    counter.open("a")
    for _ in range(5):
        counter.open("a")
    counter.close("a")
    assert counter.open("a") is None

    refusal = counter.open("a")

    assert refusal is not None
    assert (refusal.in_a_row, refusal.log) == (1, True)


def test_a_client_that_closes_its_last_connection_takes_no_memory() -> None:
    counter = ClientCounter(limit=3)
    for client in ("a", "b", "a"):
        counter.open(client)
    assert len(counter) == 2

    for client in ("a", "b", "a"):
        counter.close(client)

    assert len(counter) == 0
    assert counter.held("a") == 0


@pytest.mark.parametrize(
    "name", ["max_connections_per_address", "max_connections_per_user"]
)
def test_per_client_limits_are_checked_when_configured(name: str) -> None:
    with pytest.raises(ValueError, match=f"Expected {name} >= 1, got 0"):
        ConnectionLimits(Echo.as_asgi(), **{name: 0})


# Per-client limits on connections.


def from_address(
    app: Any, address: str, path: str = "/ws/", headers: list[Any] | None = None
) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, path, headers=headers)
    communicator.scope["client"] = (address, 50000)
    return communicator


async def test_one_address_at_its_limit_does_not_lock_out_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(
        Echo.as_asgi(), max_connections=3, max_connections_per_address=2
    )
    before = limits.stats.refused_per_address
    greedy = [from_address(app, "203.0.113.7") for _ in range(3)]
    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        answers = [await communicator.connect() for communicator in greedy]
    other = from_address(app, "198.51.100.9")

    assert answers == [(True, None), (True, None), (False, 1013)]
    assert (await other.connect())[0]
    assert limits.stats.refused_per_address == before + 1
    assert "from 203.0.113.7: it holds 2 connections, its " in caplog.text
    assert "max_connections_per_address (1 refused in a row" in caplog.text
    for communicator in (*greedy[:2], other):
        await communicator.disconnect()


async def test_the_address_limit_reads_the_trusted_proxy_header() -> None:
    app = ConnectionLimits(
        Echo.as_asgi(),
        max_connections_per_address=1,
        client_address=ClientAddress(header="X-Forwarded-For"),
    )

    def behind_proxy(client: bytes) -> WebsocketCommunicator:
        return from_address(app, "10.0.0.2", headers=[(XFF, b"1.1.1.1, " + client)])

    first = behind_proxy(b"203.0.113.7")
    assert (await first.connect())[0]
    assert await behind_proxy(b"203.0.113.7").connect() == (False, 1013)
    second = behind_proxy(b"198.51.100.9")
    assert (await second.connect())[0]
    await first.disconnect()
    await second.disconnect()


async def test_refusals_of_a_client_log_a_few_lines_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(Echo.as_asgi(), max_connections_per_address=1)
    before = limits.stats.refused_per_address
    holder = from_address(app, "203.0.113.7")
    assert (await holder.connect())[0]

    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        for _ in range(12):
            assert not (await from_address(app, "203.0.113.7").connect())[0]

    assert limits.stats.refused_per_address == before + 12
    assert len(caplog.records) == 2
    assert "(1 refused in a row" in caplog.records[0].getMessage()
    assert "(10 refused in a row" in caplog.records[1].getMessage()
    await holder.disconnect()


async def test_an_over_capacity_refusal_escapes_the_path_in_its_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ConnectionLimits(Echo.as_asgi(), max_connections=1)
    holder, accepted, _ = await connect(app)
    assert accepted

    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        refused = WebsocketCommunicator(app, "/ws/%0aCRITICAL forged")
        assert not (await refused.connect())[0]

    [record] = caplog.records
    assert "\n" not in record.getMessage()
    assert "/ws/\\nCRITICAL forged" in record.getMessage()
    await holder.disconnect()


def test_refusals_per_client_are_metrics_sources() -> None:
    labels = {(family, label) for family, label, _ in limits._metrics_source()}

    assert ("handshakes", "over_address_limit") in labels
    assert ("handshakes", "over_user_limit") in labels


@pytest.fixture
def alice_cookie(transactional_db: Any) -> str:
    """Return the session cookie header of a logged-in user."""
    client = Client()
    client.force_login(User.objects.create_user("alice", password="not-used-42"))
    return f"sessionid={client.cookies['sessionid'].value}"


async def test_a_user_at_their_limit_is_refused_on_every_address(
    alice_cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = AuthMiddlewareStack(
        ConnectionLimits(Echo.as_asgi(), max_connections_per_user=2)
    )
    before = limits.stats.refused_per_user
    alice = [(b"cookie", alice_cookie.encode())]
    first = from_address(app, "203.0.113.7", headers=alice)
    second = from_address(app, "198.51.100.9", headers=alice)
    assert (await first.connect())[0]
    assert (await second.connect())[0]

    with caplog.at_level(logging.WARNING, "django_realtime.middleware.limits"):
        third = await from_address(app, "192.0.2.1", headers=alice).connect()
    anonymous = [from_address(app, "192.0.2.1") for _ in range(3)]

    assert third == (False, 1013)
    assert limits.stats.refused_per_user == before + 1
    assert "from user " in caplog.text
    assert "its max_connections_per_user" in caplog.text
    assert [(await a.connect())[0] for a in anonymous] == [True, True, True]
    await first.disconnect()
    again = from_address(app, "192.0.2.1", headers=alice)
    assert (await again.connect())[0]
    for communicator in (second, again, *anonymous):
        await communicator.disconnect()


async def test_a_user_limit_outside_the_auth_stack_says_where_it_goes() -> None:
    app = ConnectionLimits(
        Echo.as_asgi(), max_connections_per_user=2, max_connections_per_address=1
    )

    with pytest.raises(ValueError, match="inside AuthMiddlewareStack"):
        await WebsocketCommunicator(app, "/ws/").connect()

    assert app.addresses is not None
    assert app.addresses.held("127.0.0.1") == 0
