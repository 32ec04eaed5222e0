"""Connections that move between processes: the last process to track one owns it.

A client of the HTTP transports keeps one connection id on every process
its requests land on. Tracking it where another process holds it moves it
without a change; untracking it where it has moved, or sweeping a process
it has left, changes nothing.
"""

from __future__ import annotations

import pytest

from django_realtime.presence.model import Roster

pytestmark = pytest.mark.unit


def test_tracking_a_connection_another_process_holds_moves_it_without_a_change() -> (
    None
):
    roster = Roster()
    assert roster.track("http/c1", "alice", "{}", "a") is not None
    assert roster.track("http/c1", "alice", "{}", "b") is None
    assert roster.connections["http/c1"] == ("alice", "b")
    assert roster.members["alice"].connections == 1
    assert roster.version == 1


def test_untracking_from_a_process_that_no_longer_owns_it_does_nothing() -> None:
    roster = Roster()
    roster.track("http/c1", "alice", "{}", "a")
    roster.track("http/c1", "alice", "{}", "b")
    assert roster.untrack("http/c1", "a") is None
    assert roster.members["alice"].connections == 1
    left = roster.untrack("http/c1", "b")
    assert left is not None
    assert left.record.connections == 0
    assert roster.members == {}


def test_dropping_a_process_leaves_the_connections_it_no_longer_owns() -> None:
    roster = Roster()
    roster.track("http/c1", "alice", "{}", "dead")
    roster.track("dead/1", "bob", "{}", "dead")
    roster.track("http/c1", "alice", "{}", "live")
    changes = roster.drop_process("dead")
    assert [(c.key, c.record.connections) for c in changes] == [("bob", 0)]
    assert set(roster.members) == {"alice"}


def test_syncing_a_process_does_not_take_back_a_connection_that_moved() -> None:
    roster = Roster()
    roster.track("http/c1", "alice", "{}", "a")
    roster.track("http/c1", "alice", "{}", "b")
    assert roster.sync_process("a", {"http/c1": ("alice", "{}")}) == []
    assert roster.connections["http/c1"] == ("alice", "b")
    assert roster.untrack("http/c1", "a") is None
