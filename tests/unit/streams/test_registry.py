"""The process's history store, built from REALTIME settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_realtime.streams import get_stream_store, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.streams.stores.redis import RedisHistoryStore


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    old = set_stream_store(None)
    yield
    set_stream_store(old)


def test_the_default_store_is_in_memory_with_the_default_history() -> None:
    store = get_stream_store()
    assert isinstance(store, MemoryHistoryStore)
    assert get_stream_store() is store
    policy = store.policies("anything")
    assert (policy.max_count, policy.max_bytes, policy.max_age) == (1000, 1048576, 3600)


def test_the_store_and_history_come_from_settings_and_change_with_them() -> None:
    before = get_stream_store()
    realtime = {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
            "OPTIONS": {"url": "redis://127.0.0.1:6379", "prefix": "configured"},
        },
        "STREAM_HISTORY": {"chat.*": {"MAX_COUNT": 7, "MAX_AGE": None}},
    }
    with override_settings(REALTIME=realtime):
        store = get_stream_store()
        assert isinstance(store, RedisHistoryStore)
        assert store.prefix == "configured"
        assert store.policies("chat.x").max_count == 7
        assert store.policies("chat.x").max_age is None
        assert store.policies("other").max_count == 1000
    assert get_stream_store() is not store
    assert get_stream_store() is not before


@pytest.mark.parametrize(
    ("realtime", "fragment"),
    [
        ({"STREAM_STORE": {"BACKEND": "no.such.Store"}}, "not usable"),
        ({"STREAM_STORE": {}}, "not usable"),
        ({"STREAM_HISTORY": {"*": {"MAX_COUNT": 0}}}, "not usable"),
        (
            {
                "STREAM_STORE": {
                    "BACKEND": "django_realtime.layers.InMemoryChannelLayer"
                }
            },
            "HistoryStore subclass",
        ),
    ],
)
def test_unusable_settings_raise_improperly_configured(
    realtime: dict[str, Any], fragment: str
) -> None:
    with (
        override_settings(REALTIME=realtime),
        pytest.raises(ImproperlyConfigured, match=fragment),
    ):
        get_stream_store()
