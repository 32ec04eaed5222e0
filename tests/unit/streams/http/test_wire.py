"""The HTTP transports' parsing and encoding, without a server."""

from __future__ import annotations

import json

import pytest

from django_realtime.streams.http.wire import (
    HttpRefusal,
    parse_body,
    parse_positions,
    resume_frame,
    resumed,
    sse_event,
)
from django_realtime.streams.positions import Position


def _refusal(call: object, *args: object) -> HttpRefusal:
    with pytest.raises(HttpRefusal) as info:
        call(*args)  # type: ignore[operator]
    assert json.loads(info.value.body())["error"] == info.value.code
    return info.value


def test_a_body_holds_one_json_object() -> None:
    assert parse_body(b'{"kind": "ping", "id": 1}', 100) == {"kind": "ping", "id": 1}


@pytest.mark.parametrize("body", [b"{", b"[]", b"1", b"\xff", b""])
def test_a_body_that_is_not_one_json_object_is_a_400(body: bytes) -> None:
    refusal = _refusal(parse_body, body, 100)
    assert (refusal.status, refusal.code) == (400, "bad_body")


def test_a_body_over_the_limit_is_a_413_naming_both_sizes() -> None:
    refusal = _refusal(parse_body, b"x" * 11, 10)
    assert (refusal.status, refusal.code) == (413, "too_large")
    assert "10" in refusal.message
    assert "11" in refusal.message


def test_positions_default_to_none_for_each_subscribed_stream() -> None:
    assert parse_positions(None, ("a", "b")) == {"a": None, "b": None}
    assert parse_positions('{"b": ["e1", 4]}', ("a", "b")) == {
        "a": None,
        "b": Position("e1", 4),
    }


def test_a_position_of_a_stream_not_subscribed_is_a_409() -> None:
    refusal = _refusal(parse_positions, '{"c": ["e", 1]}', ("a",))
    assert (refusal.status, refusal.code) == (409, "not_subscribed")


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"a": 1}', '{"a": ["e"]}', '{"a": [1, 2]}', '{"a": ["e", "1"]}'],
)
def test_malformed_positions_are_a_400(text: str) -> None:
    refusal = _refusal(parse_positions, text, ("a",))
    assert (refusal.status, refusal.code) == (400, "bad_positions")


def test_a_resume_is_a_subscribe_from_the_position() -> None:
    assert resume_frame(3, "a", Position("e", 7)) == {
        "kind": "subscribe",
        "id": 3,
        "stream": "a",
        "since": {"epoch": "e", "offset": 7},
    }
    assert resume_frame(1, "a", None) == {"kind": "subscribe", "id": 1, "stream": "a"}


def test_a_resume_of_an_invalid_stream_name_is_a_400() -> None:
    refusal = _refusal(resume_frame, 1, "no spaces", None)
    assert refusal.code == "bad_positions"


def test_a_recovered_resume_tells_nothing_and_an_unrecovered_one_tells_lost() -> None:
    subscribed = {
        "kind": "subscribed",
        "id": 1,
        "stream": "a",
        "epoch": "new",
        "offset": 3,
        "recovered": True,
        "replayed": 0,
    }
    assert resumed(subscribed, Position("new", 3)) is None
    lost = dict(subscribed, recovered=False, reason="epoch_changed")
    assert resumed(lost, Position("old", 9)) == {
        "kind": "lost",
        "stream": "a",
        "epoch": "new",
        "offset": 3,
        "reason": "epoch_changed",
    }
    assert resumed(dict(lost, reason=None), None) is None


def test_a_refused_resume_is_told_as_it_is() -> None:
    error = {"kind": "error", "id": None, "code": "forbidden", "stream": "a"}
    assert resumed(error, None) == error


def test_an_event_is_one_data_line_with_an_optional_name() -> None:
    assert sse_event('{"a":1}') == b'data: {"a":1}\n\n'
    assert sse_event("{}", "client") == b"event: client\ndata: {}\n\n"
