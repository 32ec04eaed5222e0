"""Parsing client frames and building server frames, without an event loop."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from django_realtime.streams.positions import Position, validate_stream_name
from django_realtime.streams.protocol import (
    FrameError,
    Ping,
    Request,
    Subscribe,
    Unsubscribe,
    parse_frame,
    subscribed_frame,
)


def test_subscribe_with_and_without_a_position() -> None:
    assert parse_frame({"kind": "subscribe", "id": 1, "stream": "chat.lobby"}) == (
        Subscribe(1, "chat.lobby", None)
    )
    frame = {
        "kind": "subscribe",
        "id": 2,
        "stream": "user:42",
        "since": {"epoch": "ab", "offset": 7},
    }
    assert parse_frame(frame) == Subscribe(2, "user:42", Position("ab", 7))


def test_unsubscribe_request_and_ping() -> None:
    assert parse_frame({"kind": "unsubscribe", "id": 3, "stream": "s"}) == Unsubscribe(
        3, "s"
    )
    assert parse_frame(
        {"kind": "request", "id": 4, "type": "chat.post", "data": {"a": 1}}
    ) == Request(4, "chat.post", {"a": 1})
    assert parse_frame({"kind": "ping", "id": 5}) == Ping(5)


@pytest.mark.parametrize(
    ("content", "frame_id", "fragment"),
    [
        ([1, 2], None, "JSON object"),
        ({"kind": "ping"}, None, "integer 'id'"),
        ({"kind": "ping", "id": True}, None, "integer 'id'"),
        ({"kind": "ping", "id": "1"}, None, "integer 'id'"),
        ({"kind": "dance", "id": 1}, 1, "'subscribe', 'unsubscribe'"),
        ({"kind": "subscribe", "id": 1}, 1, "stream name"),
        ({"kind": "subscribe", "id": 1, "stream": "a b"}, 1, "stream name"),
        ({"kind": "subscribe", "id": 1, "stream": "x" * 201}, 1, "stream name"),
        (
            {"kind": "subscribe", "id": 1, "stream": "s", "since": {"epoch": "e"}},
            1,
            '"since"',
        ),
        (
            {
                "kind": "subscribe",
                "id": 1,
                "stream": "s",
                "since": {"epoch": 1, "offset": 1},
            },
            1,
            '"since"',
        ),
        ({"kind": "request", "id": 9, "type": "_private"}, 9, "request 'type'"),
        ({"kind": "request", "id": 9, "type": "a..b"}, 9, "request 'type'"),
        ({"kind": "request", "id": 9}, 9, "request 'type'"),
    ],
)
def test_invalid_frames_are_refused_with_what_was_expected(
    content: Any, frame_id: int | None, fragment: str
) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame(content)
    error = caught.value.frame()
    assert error["kind"] == "error"
    assert error["id"] == frame_id
    assert error["code"] == "bad_frame"
    assert fragment in error["message"]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_any_json_value_is_a_frame_or_a_frame_error(content: Any) -> None:
    try:
        parse_frame(content)
    except FrameError as exc:
        error = exc.frame()
    else:
        return
    assert error["code"] == "bad_frame"


@given(st.text(max_size=250))
def test_stream_names_are_checked_by_one_rule(name: str) -> None:
    try:
        validate_stream_name(name)
    except ValueError:
        assert not (
            0 < len(name) <= 200
            and name.isascii()
            and all(c.isalnum() or c in "_.:@=-" for c in name)
        )
    else:
        assert 0 < len(name) <= 200


def test_subscribed_says_why_history_was_not_recovered() -> None:
    recovered = subscribed_frame(1, "s", Position("e", 5), True, None, 3)
    assert recovered == {
        "kind": "subscribed",
        "id": 1,
        "stream": "s",
        "epoch": "e",
        "offset": 5,
        "recovered": True,
        "replayed": 3,
    }
    lost = subscribed_frame(1, "s", Position("e", 5), False, "epoch_changed", 0)
    assert lost["reason"] == "epoch_changed"
    fresh = subscribed_frame(1, "s", Position("e", 5), False, None, 0)
    assert fresh["reason"] is None
