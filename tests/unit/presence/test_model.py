"""Presence as data, without an event loop: rosters, versions, batches, info."""

from __future__ import annotations

import pytest

from django_realtime.presence.model import (
    Batch,
    InvalidMemberInfo,
    Roster,
    diff_data,
    encode_info,
    presence_stream,
    tracked_stream,
)
from django_realtime.presence.tracker import PresenceOptions

pytestmark = pytest.mark.unit


def test_a_member_with_three_connections_is_one_member_and_leaves_with_the_last() -> (
    None
):
    roster = Roster()
    for conn in ("a/1", "a/2", "b/1"):
        roster.track(conn, "alice", '{"username":"alice"}', conn[0])
    assert list(roster.members) == ["alice"]
    assert roster.members["alice"].connections == 3
    assert roster.untrack("a/1").record.connections == 2  # type: ignore[union-attr]
    roster.untrack("a/2")
    last = roster.untrack("b/1")
    assert last is not None
    assert last.record.connections == 0
    assert roster.members == {}


def test_every_change_takes_the_next_version_and_repeats_change_nothing() -> None:
    roster = Roster()
    first = roster.track("p/1", "alice", "{}", "p")
    assert roster.track("p/1", "alice", "{}", "p") is None
    second = roster.track("p/2", "bob", "{}", "p")
    assert roster.untrack("p/9") is None
    assert first is not None
    assert second is not None
    assert (first.record.version, second.record.version, roster.version) == (1, 2, 2)


def test_dropping_a_process_removes_its_connections_only() -> None:
    roster = Roster()
    roster.track("dead/1", "alice", "{}", "dead")
    roster.track("dead/2", "bob", "{}", "dead")
    roster.track("live/1", "bob", "{}", "live")
    changes = roster.drop_process("dead")
    assert {c.key: c.record.connections for c in changes} == {"alice": 0, "bob": 1}
    assert set(roster.members) == {"bob"}


def test_syncing_a_process_makes_its_connections_exactly_those_given() -> None:
    roster = Roster()
    roster.track("p/1", "alice", "{}", "p")
    roster.track("p/2", "bob", "{}", "p")
    roster.track("q/1", "carol", "{}", "q")
    roster.sync_process("p", {"p/2": ("bob", "{}"), "p/3": ("dave", "{}")})
    assert set(roster.members) == {"bob", "carol", "dave"}
    assert roster.sync_process("p", {"p/2": ("bob", "{}"), "p/3": ("dave", "{}")}) == []


def test_a_batch_keeps_each_members_newest_change() -> None:
    roster = Roster()
    batch = Batch()
    batch.add("room", [roster.track("p/1", "alice", "{}", "p")])  # type: ignore[list-item]
    batch.add("room", [roster.untrack("p/1")])  # type: ignore[list-item]
    old = Roster().track("x/1", "alice", "{}", "x")
    batch.add("room", [old])  # type: ignore[list-item]
    taken = batch.take()
    assert not batch
    assert diff_data(taken["room"]) == {
        "type": "presence.diff",
        "joins": {},
        "leaves": {"alice": 2},
    }


def test_member_info_must_encode_within_the_limit() -> None:
    assert encode_info({"id": 1, "username": "alice"}) == '{"id":1,"username":"alice"}'
    with pytest.raises(InvalidMemberInfo, match="at most 1024 bytes"):
        encode_info({"bio": "é" * 600})
    with pytest.raises(InvalidMemberInfo, match="JSON can encode"):
        encode_info({"when": object()})
    with pytest.raises(InvalidMemberInfo, match="JSON can encode"):
        encode_info(float("nan"))


def test_presence_stream_names() -> None:
    assert presence_stream("chat.lobby") == "presence:chat.lobby"
    assert tracked_stream("presence:chat.lobby") == "chat.lobby"
    assert tracked_stream("chat.lobby") is None
    assert tracked_stream("presence:") is None


def test_options_are_checked_and_beat_often_enough() -> None:
    assert PresenceOptions().interval == 2.5
    assert PresenceOptions(expiry=3, grace=0).interval == 1.0
    with pytest.raises(ValueError, match="EXPIRY > 0"):
        PresenceOptions(expiry=0)
    with pytest.raises(TypeError, match="GRACE as a number"):
        PresenceOptions(grace="5")  # type: ignore[arg-type]
