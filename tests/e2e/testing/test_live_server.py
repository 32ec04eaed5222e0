"""Tests for the live server: a real daphne process on a loopback port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import ConnectionHandler
from django.test import override_settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_connect

from django_realtime.testing import (
    ChannelsLiveServerTestCase,
    LiveServer,
    LiveServerError,
    RealtimeLiveServerTestCase,
)
from django_realtime.testing.live_server import application_path, shared_database_names

ECHO = "tests.integration.testing.asgi_echo:application"

pytestmark = pytest.mark.e2e


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(ECHO, databases=()) as live_server:
        yield live_server


# -- the server -------------------------------------------------------------


def test_urls_name_the_loopback_port_daphne_chose(server: LiveServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.ws_url == f"ws://127.0.0.1:{server.port}"


def test_http_request_reaches_the_application(server: LiveServer) -> None:
    assert get(server.url + "/") == "hello from daphne"


def test_daphne_runs_in_another_process(server: LiveServer) -> None:
    assert int(get(server.url + "/pid/")) == server.pid


async def test_websocket_frames_round_trip(server: LiveServer) -> None:
    async with connect(server.ws_url + "/echo/", open_timeout=5) as websocket:
        await websocket.send("hello")
        assert await asyncio.wait_for(websocket.recv(), 5) == "hello"
        await websocket.send(b"\x00\xff")
        assert await asyncio.wait_for(websocket.recv(), 5) == b"\x00\xff"


def test_output_holds_the_access_log(server: LiveServer) -> None:
    get(server.url + "/logged/")

    assert '"GET /logged/' in server.output


async def test_restart_drops_connections_and_serves_again_on_the_same_port() -> None:
    live_server = LiveServer(ECHO, databases=())
    await live_server.astart()
    try:
        port = live_server.port
        async with connect(live_server.ws_url + "/", open_timeout=5) as websocket:
            await websocket.send("pid")
            first_pid = int(await asyncio.wait_for(websocket.recv(), 5))

            await live_server.arestart()

            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(websocket.recv(), 5)
        async with connect(live_server.ws_url + "/", open_timeout=5) as websocket:
            await websocket.send("pid")
            second_pid = int(await asyncio.wait_for(websocket.recv(), 5))
        assert live_server.port == port
        assert second_pid != first_pid
        assert second_pid == live_server.pid
    finally:
        await live_server.astop()


def test_stopped_server_refuses_connections_until_started() -> None:
    live_server = LiveServer(ECHO, databases=())
    live_server.start()
    url = live_server.url
    live_server.stop()

    assert not live_server.running
    assert live_server.pid is None
    with pytest.raises(urllib.error.URLError, match="refused"):
        get(url + "/")
    live_server.start()
    try:
        assert get(url + "/") == "hello from daphne"
    finally:
        live_server.stop()


async def test_kill_drops_connections_without_a_close_frame() -> None:
    live_server = LiveServer(ECHO, databases=())
    await live_server.astart()
    try:
        async with connect(live_server.ws_url + "/", open_timeout=5) as websocket:
            live_server.kill()

            with pytest.raises(ConnectionClosed) as raised:
                await asyncio.wait_for(websocket.recv(), 5)
        assert raised.value.rcvd is None
        assert not live_server.running
        await live_server.astart()
        assert (
            await asyncio.to_thread(get, live_server.url + "/") == "hello from daphne"
        )
    finally:
        await live_server.astop()


def test_start_reaps_a_server_that_died_and_logs_its_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live_server = LiveServer(ECHO, databases=())
    live_server.start()
    try:
        pid = live_server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while live_server.running and time.monotonic() < deadline:
            time.sleep(0.01)

        live_server.start()

        assert live_server.pid not in (None, pid)
        assert "had already exited with code -9" in caplog.text
        assert "Listening on TCP address" in caplog.text
    finally:
        live_server.stop()


def test_stop_twice_is_harmless() -> None:
    live_server = LiveServer(ECHO, databases=())
    live_server.start()
    live_server.stop()
    live_server.stop()

    assert "Listening on TCP address" in live_server.output


def test_start_twice_says_it_is_already_running(server: LiveServer) -> None:
    with pytest.raises(LiveServerError, match="already running at http://127"):
        server.start()


def test_port_is_unknown_before_the_first_start() -> None:
    with pytest.raises(LiveServerError, match=r"call start\(\) first"):
        _ = LiveServer(ECHO).url


def test_start_shows_daphnes_output_when_the_application_is_missing() -> None:
    live_server = LiveServer("tests.integration.testing.no_such_module:application")

    with pytest.raises(LiveServerError) as raised:
        live_server.start()

    assert "exited with code 1" in str(raised.value)
    assert "No module named 'tests.integration.testing.no_such_module'" in str(
        raised.value
    )
    assert not live_server.running


def test_start_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        live_server = LiveServer(ECHO, port=port, databases=())

        with pytest.raises(LiveServerError, match="Listen failure") as raised:
            live_server.start()

    assert f"Expected daphne to listen on 127.0.0.1:{port}" in str(raised.value)


def test_start_gives_up_after_the_startup_timeout() -> None:
    live_server = LiveServer(ECHO, databases=(), startup_timeout=0)

    with pytest.raises(LiveServerError, match="within 0 s, but it did not"):
        live_server.start()
    assert not live_server.running


def test_server_options_reach_daphnes_server() -> None:
    live_server = LiveServer(
        ECHO, databases=(), server_options={"server_name": "realtime-live"}
    )
    with (
        live_server,
        urllib.request.urlopen(live_server.url + "/", timeout=5) as response,
    ):
        server_header = response.headers["Server"]

    assert server_header == "realtime-live"


def test_an_option_daphne_does_not_know_fails_the_start_with_its_error() -> None:
    live_server = LiveServer(ECHO, databases=(), server_options={"no_such": 1})

    with pytest.raises(LiveServerError, match="exited with code 1") as raised:
        live_server.start()

    assert "unexpected keyword argument 'no_such'" in str(raised.value)


@pytest.mark.parametrize("name", ["application", "endpoints", "ready_callable"])
def test_server_options_cannot_set_what_the_live_server_sets(name: str) -> None:
    with pytest.raises(ValueError, match=f"got \\['{name}'\\]"):
        LiveServer(ECHO, server_options={name: "x"})


def test_server_options_must_be_values_json_can_carry() -> None:
    with pytest.raises(ValueError, match="values JSON can carry"):
        LiveServer(ECHO, server_options={"websocket_timeout": object()})


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("project.asgi:application", "project.asgi:application"),
        ("project.asgi.application", "project.asgi:application"),
    ],
)
def test_application_path_takes_both_spellings(given: str, expected: str) -> None:
    assert application_path(given) == expected


def test_application_path_defaults_to_asgi_application() -> None:
    with override_settings(ASGI_APPLICATION="project.asgi.app"):
        assert application_path() == "project.asgi:app"


def test_application_path_needs_an_application() -> None:
    with (
        override_settings(ASGI_APPLICATION=None),
        pytest.raises(ImproperlyConfigured, match="set ASGI_APPLICATION"),
    ):
        application_path()


def test_application_path_needs_an_attribute() -> None:
    with pytest.raises(ImproperlyConfigured, match="got 'application'"):
        application_path("application")


def test_in_memory_sqlite_is_refused_with_the_fix() -> None:
    handler = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )

    with pytest.raises(ImproperlyConfigured, match=r"in-memory SQLite .*'TEST'"):
        shared_database_names(connections=handler)


def test_database_names_are_passed_as_strings() -> None:
    handler = ConnectionHandler(
        {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "a.sqlite3"},
            "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": "b.sqlite3"},
        }
    )

    assert shared_database_names(connections=handler) == {
        "default": "a.sqlite3",
        "other": "b.sqlite3",
    }
    assert shared_database_names(["other"], connections=handler) == {
        "other": "b.sqlite3"
    }


# -- the unittest test case -------------------------------------------------


class RealtimeLiveServerTestCaseTests(RealtimeLiveServerTestCase):
    application = ECHO

    def test_server_reads_rows_committed_in_the_test_database(self) -> None:
        User.objects.create(username="alice")

        assert get(self.live_server_url + "/users/") == "1"

    def test_server_sees_an_empty_test_database_in_the_next_test(self) -> None:
        assert get(self.live_server_url + "/users/") == "0"

    def test_websocket_round_trip_with_a_sync_client(self) -> None:
        with sync_connect(self.live_server_ws_url + "/", open_timeout=5) as websocket:
            websocket.send("hello")
            assert websocket.recv(timeout=5) == "hello"

    def test_channels_name_is_the_same_class(self) -> None:
        assert ChannelsLiveServerTestCase is RealtimeLiveServerTestCase
