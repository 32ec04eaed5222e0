"""The in-memory layer's core: queues, capacity, groups and expiry, no loop."""

from __future__ import annotations

import pytest

from django_realtime.exceptions import ChannelFull, GroupsExpired
from django_realtime.layers._core import LayerCore, SweepReport

T0 = 1000.0


def make_core(
    expiry: float = 60, group_expiry: float = 86400, capacity: int = 3
) -> LayerCore:
    return LayerCore(
        expiry=expiry,
        group_expiry=group_expiry,
        capacity_of=lambda channel: 1 if channel.startswith("tiny") else capacity,
    )


# Channels


def test_pop_returns_messages_in_the_order_they_were_pushed() -> None:
    core = make_core()
    for n in range(3):
        core.push("chan", {"type": "n", "n": n}, T0)

    assert [core.pop("chan", T0) for _ in range(4)] == [
        {"type": "n", "n": 0},
        {"type": "n", "n": 1},
        {"type": "n", "n": 2},
        None,
    ]


def test_pop_of_an_unknown_channel_returns_none() -> None:
    assert make_core().pop("nobody", T0) is None


def test_push_beyond_capacity_raises_and_counts_the_rejection() -> None:
    core = make_core(capacity=2)
    core.push("chan", {"type": "a"}, T0)
    core.push("chan", {"type": "b"}, T0)

    with pytest.raises(ChannelFull, match=r"'chan' is full.*capacity is 2"):
        core.push("chan", {"type": "c"}, T0)

    assert core.stats.rejected == 1
    assert core.size("chan", T0) == 2


def test_capacity_comes_from_capacity_of_per_channel() -> None:
    core = make_core(capacity=5)
    core.push("tiny.one", {"type": "a"}, T0)

    with pytest.raises(ChannelFull):
        core.push("tiny.one", {"type": "b"}, T0)
    assert core.capacity("tiny.one") == 1
    assert core.capacity("other") == 5


def test_popping_frees_room_for_another_push() -> None:
    core = make_core(capacity=1)
    core.push("chan", {"type": "a"}, T0)
    core.pop("chan", T0)

    core.push("chan", {"type": "b"}, T0)

    assert core.pop("chan", T0) == {"type": "b"}


def test_sender_may_change_its_dict_after_push() -> None:
    core = make_core()
    message = {"type": "a", "n": 1}
    core.push("chan", message, T0)

    message["n"] = 2

    assert core.pop("chan", T0) == {"type": "a", "n": 1}


# Message expiry


def test_message_expires_exactly_at_expiry() -> None:
    core = make_core(expiry=10)
    core.push("chan", {"type": "a"}, T0)

    assert core.size("chan", T0 + 9.999) == 1
    assert core.pop("chan", T0 + 10) is None
    assert core.stats.expired_messages == 1


def test_expired_messages_are_skipped_and_later_ones_delivered() -> None:
    core = make_core(expiry=10)
    core.push("chan", {"type": "old"}, T0)
    core.push("chan", {"type": "new"}, T0 + 5)

    assert core.pop("chan", T0 + 12) == {"type": "new"}


def test_expired_messages_free_capacity() -> None:
    core = make_core(expiry=10, capacity=1)
    core.push("chan", {"type": "old"}, T0)

    core.push("chan", {"type": "new"}, T0 + 10)

    assert core.pop("chan", T0 + 10) == {"type": "new"}


def test_channel_holding_expired_messages_leaves_its_groups() -> None:
    core = make_core(expiry=10)
    core.group_add("room", "dead", T0)
    core.group_add("room", "alive", T0)
    core.push("dead", {"type": "unread"}, T0)

    result = core.group_push("room", {"type": "later"}, T0 + 11)

    assert result.delivered == ["alive"]
    assert core.members("room", T0 + 11) == ["alive"]
    assert core.stats.expired_memberships == 1


def test_direct_push_to_an_abandoned_channel_still_queues() -> None:
    core = make_core(expiry=10)
    core.group_add("room", "chan", T0)
    core.push("chan", {"type": "unread"}, T0)

    core.push("chan", {"type": "direct"}, T0 + 11)

    # The reader learns once that it was taken out of its groups; the
    # direct message waits for it.
    with pytest.raises(GroupsExpired) as expired:
        core.pop("chan", T0 + 11)
    assert (expired.value.channel, expired.value.groups) == ("chan", ("room",))
    assert core.pop("chan", T0 + 11) == {"type": "direct"}
    assert core.members("room", T0 + 11) == []


def test_a_reader_that_never_comes_back_is_forgotten_after_group_expiry() -> None:
    core = make_core(expiry=10, group_expiry=100)
    core.group_add("room", "chan", T0)
    core.push("chan", {"type": "unread"}, T0)
    core.sweep(T0 + 11)  # expires the message and the membership
    core.sweep(T0 + 11 + 99)
    with pytest.raises(GroupsExpired):
        core.pop("chan", T0 + 11 + 99)
    core.push("other", {"type": "unread"}, T0)
    core.group_add("room", "other", T0)
    core.sweep(T0 + 11)
    core.sweep(T0 + 11 + 100)
    assert core.pop("other", T0 + 11 + 100) is None


# Groups


def test_group_push_reaches_every_member() -> None:
    core = make_core()
    for channel in ("a", "b", "c"):
        core.group_add("room", channel, T0)

    result = core.group_push("room", {"type": "hi"}, T0)

    assert result.delivered == ["a", "b", "c"]
    assert result.full == []
    assert [core.pop(channel, T0) for channel in "abc"] == [{"type": "hi"}] * 3
    assert core.stats.sent == 3


def test_group_members_get_separate_top_level_copies() -> None:
    core = make_core()
    core.group_add("room", "a", T0)
    core.group_add("room", "b", T0)
    core.group_push("room", {"type": "hi", "nested": [1]}, T0)

    first = core.pop("a", T0)
    second = core.pop("b", T0)
    assert first is not None
    assert second is not None
    first["type"] = "changed"

    assert second["type"] == "hi"
    # Nested values are shared: documented as read-only.
    assert first["nested"] is second["nested"]


def test_group_push_skips_full_members_and_counts_them() -> None:
    core = make_core()
    core.group_add("room", "tiny.full", T0)
    core.group_add("room", "roomy", T0)
    core.push("tiny.full", {"type": "filler"}, T0)

    result = core.group_push("room", {"type": "hi"}, T0)

    assert result.delivered == ["roomy"]
    assert result.full == ["tiny.full"]
    assert result.members == 2
    assert core.stats.dropped_messages == 1
    assert core.pop("tiny.full", T0) == {"type": "filler"}


def test_group_push_to_an_unknown_group_delivers_nothing() -> None:
    result = make_core().group_push("nobody", {"type": "hi"}, T0)

    assert (result.delivered, result.full, result.members) == ([], [], 0)


def test_group_discard_removes_the_member_and_empty_groups() -> None:
    core = make_core()
    core.group_add("room", "a", T0)

    core.group_discard("room", "a")
    core.group_discard("room", "a")
    core.group_discard("other", "a")

    assert core.members("room", T0) == []
    assert core.group_push("room", {"type": "hi"}, T0).members == 0


def test_group_add_twice_keeps_one_membership() -> None:
    core = make_core()
    core.group_add("room", "a", T0)
    core.group_add("room", "a", T0 + 1)

    assert core.members("room", T0 + 1) == ["a"]


# Group expiry


def test_membership_expires_exactly_at_group_expiry() -> None:
    core = make_core(group_expiry=100)
    core.group_add("room", "a", T0)

    assert core.members("room", T0 + 99.999) == ["a"]
    assert core.members("room", T0 + 100) == []
    assert core.stats.expired_memberships == 1


def test_group_add_again_renews_and_reorders_the_membership() -> None:
    core = make_core(group_expiry=100)
    core.group_add("room", "a", T0)
    core.group_add("room", "b", T0 + 10)
    core.group_add("room", "a", T0 + 50)

    assert core.members("room", T0 + 60) == ["b", "a"]
    assert core.members("room", T0 + 120) == ["a"]
    assert core.group_push("room", {"type": "hi"}, T0 + 120).delivered == ["a"]


def test_expired_members_do_not_receive_group_messages() -> None:
    core = make_core(group_expiry=100)
    core.group_add("room", "a", T0)

    result = core.group_push("room", {"type": "hi"}, T0 + 100)

    assert result.members == 0
    assert core.pop("a", T0 + 100) is None


# Sweeping


def test_sweep_reports_what_expired_once() -> None:
    core = make_core(expiry=10, group_expiry=100)
    core.push("a", {"type": "x"}, T0)
    core.push("a", {"type": "y"}, T0)
    core.push("b", {"type": "z"}, T0)
    core.group_add("room", "c", T0)

    report = core.sweep(T0 + 100)

    assert report == SweepReport(expired_messages=3, channels=2, expired_memberships=1)
    assert core.sweep(T0 + 200) is None


def test_sweep_includes_expiry_found_by_operations() -> None:
    core = make_core(expiry=10)
    core.push("a", {"type": "x"}, T0)
    core.pop("a", T0 + 10)

    assert core.sweep(T0 + 10) == SweepReport(1, 1, 0)


def test_maybe_sweep_waits_for_the_interval() -> None:
    core = LayerCore(
        expiry=10, group_expiry=100, capacity_of=lambda _: 5, sweep_interval=1.0
    )
    assert core.maybe_sweep(T0) is None  # first sweep: nothing expired yet
    core.push("a", {"type": "x"}, T0)

    assert core.maybe_sweep(T0 + 0.5) is None
    assert core.maybe_sweep(T0 + 10.4) == SweepReport(1, 1, 0)
    assert core.maybe_sweep(T0 + 10.9) is None


def test_sweep_drops_empty_queues_and_keeps_capacity_working() -> None:
    core = make_core(capacity=1)
    core.push("a", {"type": "x"}, T0)
    core.pop("a", T0)
    core.sweep(T0)

    core.push("a", {"type": "y"}, T0)
    with pytest.raises(ChannelFull):
        core.push("a", {"type": "z"}, T0)


def test_flush_drops_messages_and_groups_but_keeps_stats() -> None:
    core = make_core()
    core.push("a", {"type": "x"}, T0)
    core.group_add("room", "a", T0)

    core.flush()

    assert core.pop("a", T0) is None
    assert core.members("room", T0) == []
    assert core.stats.sent == 1
