"""Stream requests over HTTP count as connections on the ops page."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from asgiref.testing import ApplicationCommunicator

from django_realtime.ops.console import inventory, report
from django_realtime.streams.stores import MemoryHistoryStore
from tests.integration.streams.http.test_views import Browser, store

__all__ = ["store"]

pytestmark = pytest.mark.timeout(20)


async def test_an_event_stream_is_listed_as_sse_and_an_operator_can_end_it(
    store: MemoryHistoryStore,
) -> None:
    browser = Browser()
    await browser.start()
    (subscribed,) = await browser.post(
        {"kind": "subscribe", "id": 1, "stream": "room.ops"}
    )
    positions = json.dumps({"room.ops": [subscribed["epoch"], subscribed["offset"]]})
    query = urlencode({"client": browser.client, "positions": positions})
    events = ApplicationCommunicator(
        browser.app, browser._scope("GET", "/rt/events", query, {})
    )
    await events.send_input({"type": "http.request", "body": b""})
    assert (await events.receive_output(10))["status"] == 200
    assert b"event: client" in (await events.receive_output(10))["body"]

    answer = await report.report()

    [connection] = [c for c in answer["connections"] if c["path"] == "/rt/events"]
    assert connection["transport"] == "sse"
    assert connection["streams"] == ["room.ops"]
    assert (connection["frames_in"], connection["frames_out"]) == (None, None)
    [stream] = [s for s in answer["streams"] if s["name"] == "room.ops"]
    assert stream["subscribers"] == 1

    closed = await inventory.close(connection["id"])

    assert closed is not None
    body = b""
    while True:
        message = await events.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await events.wait(10)
    assert b"1008" in body or b"4003" in body, body
    assert [
        c for c in (await report.report())["connections"] if c["path"] == "/rt/events"
    ] == []
