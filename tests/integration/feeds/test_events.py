"""What each subscriber is sent of a feed's change: pure, no database."""

from __future__ import annotations

import json

from django_realtime.feeds.events import (
    Change,
    change_event,
    parse_event,
    recheck_event,
    view_of,
)


def test_a_readable_row_enters_then_updates() -> None:
    held: set[object] = set()
    created = Change("create", 7, {"pk": 7, "n": 1}, None)
    assert view_of(created, True, held) == {
        "type": "enter",
        "op": "create",
        "pk": 7,
        "row": {"pk": 7, "n": 1},
    }
    updated = Change("update", 7, {"pk": 7, "n": 2}, ["n"])
    assert view_of(updated, True, held) == {
        "type": "update",
        "op": "update",
        "pk": 7,
        "row": {"pk": 7, "n": 2},
        "changed": ["n"],
    }
    assert held == {7}


def test_a_row_no_longer_readable_leaves_once_and_is_then_withheld() -> None:
    held: set[object] = {7}
    moved = Change("update", 7, {"pk": 7}, None)
    assert view_of(moved, False, held) == {"type": "leave", "op": "update", "pk": 7}
    assert held == set()
    assert view_of(moved, False, held) is None
    assert view_of(Change("delete", 7), False, held) is None


def test_a_deleted_row_leaves_whatever_the_verdict() -> None:
    held: set[object] = {"a"}
    assert view_of(Change("delete", "a"), True, held) == {
        "type": "leave",
        "op": "delete",
        "pk": "a",
    }


def test_payloads_parse_back_and_garbage_is_not_a_change() -> None:
    text = json.dumps(change_event("update", 3, {"pk": 3}, ["x"]))
    assert parse_event(text) == Change("update", 3, {"pk": 3}, ["x"])
    assert parse_event(json.dumps(recheck_event(5))) == Change("recheck", user=5)
    for garbage in ["not json", "[]", '{"op": "drop"}', '{"op": "update", "pk": []}']:
        assert parse_event(garbage) is None
