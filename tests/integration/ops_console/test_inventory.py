"""What a process reports to the ops page: its connections, streams, sections."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User

from django_realtime.ops.console import control, inventory, report
from django_realtime.ops.console.page import age, page_context
from django_realtime.streams import apublish
from django_realtime.testing import WebsocketCommunicator
from django_realtime.testing.streams import StreamClient
from tests.integration.ops_console.consumers import as_user

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _no_sections() -> Iterator[None]:
    before = dict(report._sections)
    yield
    report._sections.clear()
    report._sections.update(before)


def alice() -> User:
    return User(pk=7, username="alice")


def mine(answer: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return [c for c in answer["connections"] if c["path"] == path]


async def test_an_open_connection_is_listed_with_its_user_path_and_counts() -> None:
    ws = WebsocketCommunicator(as_user(alice()), "/ws/echo/")
    assert (await ws.connect())[0]
    for text in ("one", "two", "three"):
        await ws.send_to(text_data=text)
        assert await ws.receive_from() == text
    await ws.send_to(text_data="four")
    await ws.receive_from()

    answer = await report.report()

    [connection] = mine(answer, "/ws/echo/")
    assert connection["user"] == "alice (#7)"
    assert connection["transport"] == "websocket"
    assert (connection["frames_in"], connection["frames_out"]) == (4, 4)
    assert connection["streams"] == []
    assert (answer["host"], answer["pid"]) == report.whoami()
    assert answer["draining"] is False
    await ws.disconnect()
    assert mine(await report.report(), "/ws/echo/") == []


async def test_an_anonymous_connection_is_listed_as_anonymous() -> None:
    ws = WebsocketCommunicator(as_user(AnonymousUser()), "/ws/echo/")
    assert (await ws.connect())[0]

    [connection] = mine(await report.report(), "/ws/echo/")

    assert connection["user"] == "anonymous"
    await ws.disconnect()


async def test_connections_are_numbered_in_the_order_they_opened() -> None:
    first = WebsocketCommunicator(as_user(alice()), "/ws/echo/")
    second = WebsocketCommunicator(as_user(alice()), "/ws/echo/")
    assert (await first.connect())[0]
    assert (await second.connect())[0]

    numbers = [c["id"] for c in mine(await report.report(), "/ws/echo/")]

    assert len(numbers) == 2
    assert numbers[0] < numbers[1]
    await first.disconnect()
    await second.disconnect()


async def test_a_stream_is_listed_with_its_subscribers_position_and_history() -> None:
    name = f"drain.ops-console-{uuid.uuid4().hex}"
    for n in range(3):
        await apublish(name, {"n": n}, immediately=True)
    clients = [StreamClient(as_user(alice()), "/ws/streams/") for _ in range(2)]
    for client in clients:
        await client.connect()
        await client.subscribe(name)

    answer = await report.report()

    [stream] = [s for s in answer["streams"] if s["name"] == name]
    assert stream["subscribers"] == 2
    assert stream["offset"] == 3
    assert stream["kept"] == 3
    assert stream["error"] is None
    assert [c["streams"] for c in mine(answer, "/ws/streams/")] == [[name], [name]]
    for client in clients:
        await client.close()


async def test_closing_a_connection_closes_that_one_with_1008_and_a_reason() -> None:
    kept = WebsocketCommunicator(as_user(alice()), "/ws/echo/")
    closed = WebsocketCommunicator(as_user(alice()), "/ws/echo/")
    assert (await kept.connect())[0]
    assert (await closed.connect())[0]
    number = mine(await report.report(), "/ws/echo/")[1]["id"]

    about = await inventory.close(number)

    assert about is not None
    assert about["id"] == number
    assert await closed.receive_output() == {
        "type": "websocket.close",
        "code": inventory.CLOSE_BY_OPERATOR,
        "reason": "closed by an operator",
    }
    await kept.send_to(text_data="still here")
    assert await kept.receive_from() == "still here"
    await closed.disconnect()
    await kept.disconnect()


async def test_closing_a_connection_that_is_not_open_closes_nothing() -> None:
    assert await inventory.close(10**9) is None
    closing = await control.aclose_connection(*report.whoami(), 10**9)
    assert closing == control.Closing(True, None)


async def test_without_a_layer_that_reaches_others_only_this_process_answers() -> None:
    survey = await control.asurvey(expected=["elsewhere:1"])

    assert survey.reaches_others is False
    assert [(p["host"], p["pid"]) for p in survey.processes] == [report.whoami()]
    assert survey.silent == ["elsewhere:1"]


async def test_a_section_added_is_in_every_report() -> None:
    async def presence() -> list[dict[str, Any]]:
        return [{"user": "alice", "online": 2}]

    report.add_section("Presence", presence)

    answer = await report.report()

    assert answer["sections"] == {"Presence": [{"user": "alice", "online": 2}]}
    context = page_context(control.Survey(processes=[answer]))
    [section] = context["sections"]
    name = control.name_of(*report.whoami())
    assert section == {
        "title": "Presence",
        "columns": ["process", "user", "online"],
        "rows": [[name, "alice", 2]],
    }


async def test_a_section_that_fails_shows_the_failure_and_the_rest_is_there() -> None:
    async def broken() -> list[dict[str, Any]]:
        raise RuntimeError("boom")

    report.add_section("Broken", broken)

    answer = await report.report()

    assert answer["sections"]["Broken"] == [{"error": "failed (see the server's log)"}]


def test_the_page_sums_a_stream_over_processes_and_keeps_the_newest_position() -> None:
    def process(pid: int, subscribers: int, offset: int) -> dict[str, Any]:
        stream = {
            "name": "s",
            "subscribers": subscribers,
            "epoch": "e",
            "offset": offset,
            "kept": offset,
            "error": None,
        }
        return {
            "host": "h",
            "pid": pid,
            "draining": pid == 2,
            "connections": [],
            "streams": [stream],
            "sections": {},
        }

    survey = control.Survey(processes=[process(1, 2, 5), process(2, 3, 6)])

    context = page_context(survey, now=0)

    [stream] = context["streams"]
    assert stream["subscribers"] == 5
    assert stream["by_process"] == ["h:1: 2", "h:2: 3"]
    assert (stream["offset"], stream["kept"]) == (6, 6)
    assert [p["draining"] for p in context["processes"]] == [False, True]
    assert context["seen"] == "h:1,h:2"


def test_ages_are_written_in_the_largest_fitting_unit() -> None:
    assert [age(s) for s in (-1, 5, 125, 7200, 3 * 86400)] == [
        "0 s",
        "5 s",
        "2 min",
        "2.0 h",
        "3.0 d",
    ]


def test_a_connection_shows_since_when_in_utc() -> None:
    since = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp()
    connection = {
        "id": 1,
        "user": "u",
        "path": "/",
        "transport": "websocket",
        "since": since,
        "frames_in": 0,
        "frames_out": 0,
        "streams": [],
    }
    answer = {
        "host": "h",
        "pid": 1,
        "draining": False,
        "connections": [connection],
        "streams": [],
    }

    context = page_context(control.Survey(processes=[answer]), now=since + 90)

    [row] = context["processes"][0]["connections"]
    assert (row["age"], row["since_utc"]) == ("1 min", "2026-01-02 03:04:05 UTC")
