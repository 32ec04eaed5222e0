"""Channel and group names: any value is accepted by the rule or refused cleanly.

A name often carries client input (``f"chat.{room}"``), so whatever it is,
the layer either takes it or raises :exc:`InvalidChannelName`, and a refused
operation changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import string
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from django_realtime.exceptions import InvalidChannelName
from django_realtime.layers import InMemoryChannelLayer
from django_realtime.layers.base import MAX_NAME_LENGTH, BaseChannelLayer

pytestmark = pytest.mark.timeout(60)

ALLOWED = string.ascii_letters + string.digits + "-_."
# The documented rule, written once more, independently of the layer's regex.
GROUP_RULE = re.compile(r"[A-Za-z0-9_.\-]+")
CHANNEL_RULE = re.compile(r"[A-Za-z0-9_.\-]+(![A-Za-z0-9_.\-]*)?")

any_char = st.characters(exclude_categories=())
names = st.one_of(
    st.text(any_char, max_size=120),
    st.text(st.sampled_from(ALLOWED + "!\n\t /:é٣"), max_size=110),
    st.builds(lambda name: name + "\n", st.text(st.sampled_from(ALLOWED), min_size=1)),
    st.none(),
    st.integers(),
    st.binary(max_size=20),
)

LAYER = BaseChannelLayer()


def _accepts(check: Any, name: Any) -> bool:
    try:
        accepted = check(name)
    except InvalidChannelName:
        return False
    assert accepted is True
    return True


@given(name=names)
def test_any_value_is_a_valid_group_name_or_invalid_channel_name(name: Any) -> None:
    if _accepts(LAYER.require_valid_group_name, name):
        assert isinstance(name, str)
        assert 0 < len(name) < MAX_NAME_LENGTH


@given(name=names)
def test_any_value_is_a_valid_channel_name_or_invalid_channel_name(name: Any) -> None:
    if _accepts(LAYER.require_valid_channel_name, name):
        assert isinstance(name, str)
        assert 0 < len(name) < MAX_NAME_LENGTH


@settings(max_examples=300)
@given(name=names)
def test_the_names_accepted_are_exactly_those_of_the_documented_rule(
    name: Any,
) -> None:
    if not isinstance(name, str) or len(name) >= MAX_NAME_LENGTH:
        assert not _accepts(LAYER.require_valid_group_name, name)
        return
    assert _accepts(LAYER.require_valid_group_name, name) == bool(
        GROUP_RULE.fullmatch(name)
    )
    assert _accepts(LAYER.require_valid_channel_name, name) == bool(
        CHANNEL_RULE.fullmatch(name)
    )


async def _operate(group: Any, channel: Any) -> tuple[str, int]:
    layer = InMemoryChannelLayer()
    own = await layer.new_channel()
    await layer.group_add("kept", own)
    outcome = "ok"
    try:
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "probe"})
        await layer.send(channel, {"type": "probe"})
        await layer.group_discard(group, channel)
    except InvalidChannelName:
        outcome = "refused"
    before = layer.stats.sent
    await layer.group_send("kept", {"type": "probe"})
    return outcome, layer.stats.sent - before


@settings(max_examples=150, deadline=None)
@given(group=names, channel=names)
def test_a_refused_name_leaves_the_in_memory_layer_working(
    group: Any, channel: Any
) -> None:
    outcome, reached = asyncio.run(asyncio.wait_for(_operate(group, channel), 5))
    assert reached == 1
    if outcome == "ok":
        assert _accepts(LAYER.require_valid_group_name, group)
        assert _accepts(LAYER.require_valid_channel_name, channel)
