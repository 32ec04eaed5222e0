"""The drain's pure parts, its settings check, the readiness view, and drains
of in-process connections (no server: the server processes are in
test_servers_e2e.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest
from django.test import RequestFactory, override_settings

from django_realtime.checks import check_drain
from django_realtime.conf import DEFAULTS
from django_realtime.ops import drain, drain_control, drain_signal
from django_realtime.testing import WebsocketCommunicator
from tests.integration.drain import consumers
from tests.integration.drain.consumers import Echo


@pytest.fixture(autouse=True)
def _accepting() -> Iterator[None]:
    yield
    drain.resume()


# -- plan_batches ------------------------------------------------------------


def test_the_defaults_close_10000_connections_in_5_seconds() -> None:
    options = DEFAULTS["DRAIN"]

    plan = drain.plan_batches(
        10_000, options["BATCH_SIZE"], options["INTERVAL"], options["DEADLINE"]
    )

    assert len(plan) == 20
    assert {size for _, size in plan} == {500}
    assert plan[-1][0] == pytest.approx(4.75)
    assert plan[-1][0] < options["DEADLINE"] < 30


def test_batches_grow_so_that_the_last_goes_within_half_the_deadline() -> None:
    plan = drain.plan_batches(100_000, 500, 0.25, 25)

    assert sum(size for _, size in plan) == 100_000
    assert plan[-1][0] <= 12.5
    assert max(size for _, size in plan) > 500


def test_the_last_batch_takes_the_remainder() -> None:
    assert drain.plan_batches(5, 2, 1.0, 20) == [(0.0, 2), (1.0, 2), (2.0, 1)]


def test_no_connections_make_no_batches() -> None:
    assert drain.plan_batches(0, 500, 0.25, 25) == []


def test_no_interval_closes_every_batch_at_once() -> None:
    assert drain.plan_batches(3, 2, 0, 25) == [(0.0, 2), (0.0, 1)]


@pytest.mark.parametrize(("size", "interval", "deadline"), [(0, 1, 1), (1, -1, 1)])
def test_plan_batches_refuses_bad_parameters(
    size: int, interval: float, deadline: float
) -> None:
    with pytest.raises(ValueError, match="Expected batch_size > 0"):
        drain.plan_batches(10, size, interval, deadline)


# -- which processes a command is for ------------------------------------------


def test_a_command_without_hosts_or_pids_is_for_every_process() -> None:
    assert drain_control.is_for({"hosts": [], "pids": []}, "web-1", 7)


def test_a_command_picks_processes_by_host_and_pid() -> None:
    message = {"hosts": ["web-1", "web-2"], "pids": [7]}

    assert drain_control.is_for(message, "web-2", 7)
    assert not drain_control.is_for(message, "web-3", 7)
    assert not drain_control.is_for(message, "web-1", 8)


# -- the settings check ----------------------------------------------------------


def test_the_check_accepts_a_partial_drain_setting() -> None:
    with override_settings(REALTIME={"DRAIN": {"DEADLINE": 50}}):
        assert check_drain() == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a dict, got list"),
        ({"BATCH": 5}, "unknown key 'BATCH'"),
        ({"BATCH_SIZE": 0}, "'BATCH_SIZE'] must be a positive integer, got 0"),
        ({"INTERVAL": -1}, "'INTERVAL'] must be a number of seconds >= 0"),
        ({"DEADLINE": "25"}, "'DEADLINE'] must be a number of seconds > 0"),
        ({"REASON": "x" * 124}, "'REASON'] must be a string of at most 123"),
        ({"SIGNAL": "yes"}, "'SIGNAL'] must be True or False"),
    ],
)
def test_the_check_reports_bad_drain_settings(value: object, message: str) -> None:
    with override_settings(REALTIME={"DRAIN": value}):
        errors = check_drain()

    assert [error.id for error in errors] == ["django_realtime.E009"]
    assert message in errors[0].msg


# -- the readiness view --------------------------------------------------------


@pytest.mark.timeout(10)
async def test_the_readiness_view_answers_503_while_draining() -> None:
    request = RequestFactory().get("/ready/")

    before = await drain.ready(request)
    await drain.drain(deadline=1)
    during = await drain.ready(request)
    drain.resume()
    after = await drain.ready(request)

    assert (before.status_code, during.status_code, after.status_code) == (
        200,
        503,
        200,
    )
    assert during["Cache-Control"] == "no-store"


# -- drains of in-process connections -----------------------------------------


async def _connected(count: int) -> list[WebsocketCommunicator]:
    clients = [WebsocketCommunicator(Echo.as_asgi(), "/ws/") for _ in range(count)]
    for client in clients:
        accepted, _ = await client.connect()
        assert accepted
    return clients


async def _closed(client: WebsocketCommunicator) -> tuple[float, dict[str, object]]:
    """Wait for the server's close; answer it as a client would."""
    message = await client.receive_output(timeout=5)
    when = asyncio.get_running_loop().time()
    await client.disconnect(code=message.get("code", 1000))
    return when, message


@pytest.mark.timeout(20)
async def test_a_drain_closes_every_connection_with_1012_in_batches() -> None:
    clients = await _connected(5)
    loop = asyncio.get_running_loop()
    start = loop.time()

    report, *closes = await asyncio.gather(
        drain.drain(batch_size=2, interval=0.2, deadline=5, reason="bye"),
        *map(_closed, clients),
    )

    assert [message for _, message in closes] == [
        {"type": "websocket.close", "code": 1012, "reason": "bye"}
    ] * 5
    # Batches of two, oldest first, each at its time (sleeps only run late).
    when = [moment - start for moment, _ in closes]
    assert max(when[:2]) < min(when[2:])
    assert max(when[:4]) < when[4]
    assert when[2] >= 0.19
    assert when[4] >= 0.39
    assert report.closed == 5
    assert report.still_open == 0
    assert report.elapsed < 2


@pytest.mark.timeout(20)
async def test_a_drain_waits_for_the_running_handler_and_sends_its_reply_first() -> (
    None
):
    (client,) = await _connected(1)
    consumers.sleep_started = asyncio.Event()
    await client.send_to(text_data="slow 0.5")
    await consumers.sleep_started.wait()
    consumers.sleep_started = None

    draining = asyncio.ensure_future(drain.drain(batch_size=1, interval=0, deadline=5))

    assert await client.receive_from(timeout=2) == "done"
    _, close = await _closed(client)
    assert close["code"] == 1012
    assert (await draining).closed == 1


@pytest.mark.timeout(20)
async def test_a_handshake_is_refused_while_draining_until_resume() -> None:
    await drain.drain(deadline=1)

    refused = WebsocketCommunicator(Echo.as_asgi(), "/ws/")
    assert await refused.connect() == (False, 1000)
    drain.resume()
    (accepted,) = await _connected(1)
    await accepted.disconnect()


@pytest.mark.timeout(20)
async def test_connections_still_open_at_the_deadline_are_reported() -> None:
    clients = await _connected(2)

    # Nobody answers the closes: the connections stay open.
    report = await drain.drain(batch_size=10, interval=0, deadline=0.3)

    assert (report.closed, report.still_open) == (2, 2)
    assert report.elapsed == pytest.approx(0.3, abs=0.2)
    for client in clients:
        await client.disconnect()


@pytest.mark.timeout(20)
async def test_a_second_drain_joins_the_one_under_way() -> None:
    clients = await _connected(1)
    first = asyncio.ensure_future(drain.drain(deadline=2))
    second = asyncio.ensure_future(drain.drain(deadline=9, batch_size=7))
    await _closed(clients[0])

    assert await first is await second


@pytest.mark.timeout(20)
async def test_start_drain_drains_from_another_thread_and_resumes() -> None:
    clients = await _connected(3)

    future = await asyncio.to_thread(
        drain.start_drain, stop=False, batch_size=1, interval=0.05, deadline=5
    )
    closes = await asyncio.gather(*map(_closed, clients))
    report = await asyncio.wrap_future(future)

    assert [message["code"] for _, message in closes] == [1012] * 3
    assert (report.closed, report.still_open) == (3, 0)
    assert not drain.is_draining()


# -- SIGTERM: the server's unless asked ------------------------------------------


class ServerHandler:
    """A server's SIGTERM handler: records the signals it is given."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.called = asyncio.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.calls.append(signum)
        self.called.set()


@pytest.fixture
def server_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerHandler]:
    """Install a server's SIGTERM handler; start the process as if fresh."""
    handler = ServerHandler()
    previous = signal.signal(signal.SIGTERM, handler)
    # What the first connection of a fresh process finds.
    monkeypatch.setattr(drain, "_engaged", False)
    monkeypatch.setattr(drain, "_sigterm_wanted", False)
    for name, value in [
        ("_server_handler", None),
        ("_start", None),
        ("_received", False),
        ("_stopped", False),
    ]:
        monkeypatch.setattr(drain_signal, name, value)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.timeout(10)
@override_settings(REALTIME={"DRAIN": {"CONTROL": False}})
async def test_by_default_the_first_connection_leaves_the_servers_sigterm_alone(
    server_handler: ServerHandler,
) -> None:
    (client,) = await _connected(1)

    assert drain._engaged
    assert signal.getsignal(signal.SIGTERM) is server_handler
    await client.disconnect()


@pytest.mark.timeout(10)
@override_settings(REALTIME={"DRAIN": {"CONTROL": False, "DEADLINE": 5}})
async def test_handle_sigterm_drains_on_sigterm_then_calls_the_servers_handler(
    server_handler: ServerHandler,
) -> None:
    drain.handle_sigterm()
    (client,) = await _connected(1)
    assert signal.getsignal(signal.SIGTERM) is not server_handler

    os.kill(os.getpid(), signal.SIGTERM)
    _, close = await _closed(client)
    await server_handler.called.wait()

    assert close["code"] == 1012
    assert server_handler.calls == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is server_handler


@pytest.mark.timeout(10)
@override_settings(
    REALTIME={
        "DRAIN": {"CONTROL": False, "SIGNAL": True, "INTERVAL": 0, "DEADLINE": 0.4}
    }
)
async def test_the_signal_setting_takes_sigterm_over_and_a_second_one_stops_at_once(
    server_handler: ServerHandler,
) -> None:
    slow, other = await _connected(2)
    consumers.sleep_started = asyncio.Event()
    # Longer than the drain's deadline: it is still open when the drain ends.
    await slow.send_to(text_data="slow 1")
    await consumers.sleep_started.wait()
    consumers.sleep_started = None

    os.kill(os.getpid(), signal.SIGTERM)
    # The drain is under way: the slow connection's close waits for its
    # handler, the other one is closed.
    _, close = await _closed(other)
    assert server_handler.calls == []
    os.kill(os.getpid(), signal.SIGTERM)
    await server_handler.called.wait()
    report = await drain.drain()  # joins the drain under way

    assert close["code"] == 1012
    assert server_handler.calls == [signal.SIGTERM]
    assert (report.closed, report.still_open) == (1, 1)
    assert await slow.receive_from(timeout=5) == "done"
    await slow.disconnect()
