"""The pure parts of ``manage.py realtime``: arguments, input lines, frames."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError

from django_realtime.ops.cli.arguments import (
    format_position,
    local_host,
    parse_position,
    websocket_address,
)
from django_realtime.ops.cli.connect import Outgoing, describe, parse_line
from django_realtime.ops.cli.tail import TailReader
from django_realtime.streams.positions import Position


def test_a_position_reads_back_as_it_is_printed_even_with_colons_in_the_epoch() -> None:
    for position in (Position("9f3a0c21", 41), Position("a:b", 0)):
        assert parse_position(format_position(position)) == position


@pytest.mark.parametrize("value", ["", "41", ":41", "abc:", "abc:-1", "abc:x"])
def test_a_position_that_is_not_epoch_colon_offset_is_refused(value: str) -> None:
    with pytest.raises(CommandError, match="EPOCH:OFFSET") as caught:
        parse_position(value)
    assert caught.value.returncode == 2


@pytest.mark.parametrize(
    ("url", "address", "origin"),
    [
        ("ws://127.0.0.1:8000/ws/x/", "ws://127.0.0.1:8000/ws/x/", "http://127.0.0.1:8000"),
        ("http://example.com/ws/?a=1", "ws://example.com/ws/?a=1", "http://example.com"),
        ("https://example.com", "wss://example.com/", "https://example.com"),
        ("WSS://example.com:8443/s", "wss://example.com:8443/s", "https://example.com:8443"),
    ],
)  # fmt: skip
def test_a_url_becomes_a_websocket_address_and_its_sites_origin(
    url: str, address: str, origin: str
) -> None:
    assert websocket_address(url) == (address, origin)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "/ws/x/", "ws://:80/", "ws://h:x/"]
)
def test_a_url_that_is_not_a_websocket_or_http_url_is_refused(url: str) -> None:
    with pytest.raises(CommandError) as caught:
        websocket_address(url)
    assert caught.value.returncode == 2


def test_the_local_host_is_one_that_allowed_hosts_accepts() -> None:
    assert local_host(["*"]) == "localhost"
    assert local_host([]) == "localhost"
    assert local_host(["*", ".example.com", "www.example.org"]) == "example.com"


@pytest.mark.parametrize(
    ("line", "outgoing"),
    [
        ("hello\n", Outgoing(text="hello")),
        ('{"kind": "ping", "id": 1}\r\n', Outgoing(text='{"kind": "ping", "id": 1}')),
        ("//etc\n", Outgoing(text="/etc")),
        ("/binary 68 69\n", Outgoing(data=b"hi")),
        ("/close\n", Outgoing(close=(1000, ""))),
        ("/close 4000 all done\n", Outgoing(close=(4000, "all done"))),
        ("\n", None),
    ],
)
def test_an_input_line_becomes_a_frame_or_the_close(
    line: str, outgoing: Outgoing | None
) -> None:
    assert parse_line(line) == outgoing


@pytest.mark.parametrize("line", ["/binary zz", "/close 1006", "/close x", "/quit"])
def test_an_input_command_that_is_not_valid_says_what_was_expected(line: str) -> None:
    with pytest.raises(ValueError, match="Expected"):
        parse_line(line)


def test_text_and_binary_frames_are_shown_distinctly() -> None:
    assert describe("hi") == "text hi"
    assert describe(b"hi") == "binary 6869"


def _frame(**fields: object) -> str:
    return json.dumps(fields)


def test_the_tail_reader_follows_positions_and_says_when_history_is_lost() -> None:
    reader = TailReader("s", Position("e", 1), count=2)
    subscribed = _frame(
        kind="subscribed",
        id=1,
        stream="s",
        epoch="e",
        offset=3,
        recovered=True,
        replayed=2,
    )
    said = reader.take(subscribed)
    assert said.line == subscribed
    assert "replaying 2 after e:1" in (said.note or "")
    assert reader.position == Position("e", 1)
    reader.take(_frame(kind="publication", stream="s", epoch="e", offset=2, data=1))
    assert reader.position == Position("e", 2)
    assert not reader.done
    lost = reader.take(
        _frame(kind="lost", stream="s", epoch="f", offset=7, reason="epoch_changed")
    )
    assert "going on from f:7" in (lost.note or "")
    assert reader.resume_note() == "Stopped at f:7: resume with --from f:7."
    other = reader.take(_frame(kind="pong", id=9))
    assert other.line is None
    assert "Another frame" in (other.note or "")
    reader.take(_frame(kind="publication", stream="s", epoch="f", offset=8, data=2))
    assert reader.done


def test_the_tail_reader_raises_the_refusal_of_its_subscribe() -> None:
    reader = TailReader("s", None, count=None)
    with pytest.raises(CommandError, match="forbidden") as caught:
        reader.take(_frame(kind="error", id=1, code="forbidden", message="No."))
    assert caught.value.returncode == 1
