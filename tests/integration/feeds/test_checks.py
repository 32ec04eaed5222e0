"""The feeds system check: a bound model whose bulk paths publish nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group

from django_realtime.feeds import Binding, register
from django_realtime.feeds.binding import unregister
from django_realtime.feeds.checks import check_bulk_paths, check_version_fields


@pytest.fixture
def bound_groups() -> Iterator[None]:
    class Groups(Binding):
        model = Group
        name = "test.groups"

    register(Groups)
    yield
    unregister("test.groups")


def test_a_model_without_a_feed_queryset_is_warned_of(bound_groups: None) -> None:
    messages = [m for m in check_bulk_paths() if m.obj is Group]
    assert [m.id for m in messages] == ["django_realtime.feeds.W001"]
    assert "auth.Group" in messages[0].msg


def test_models_built_on_feed_querysets_pass() -> None:
    # The jobs model's manager is a FeedQuerySet's; its feed is registered.
    assert not [m for m in check_bulk_paths() if m.obj is not Group]


def test_a_binding_without_a_version_field_is_warned_of(bound_groups: None) -> None:
    messages = check_version_fields()
    assert [(m.id, m.obj) for m in messages] == [("django_realtime.feeds.W002", Group)]
    assert "'test.groups' has no version_field" in messages[0].msg
