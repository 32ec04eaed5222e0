"""CHANNEL_LAYERS: building layers by alias, caching, swapping, errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from django_realtime.exceptions import InvalidChannelLayerError
from django_realtime.layers import (
    DEFAULT_CHANNEL_LAYER,
    ChannelLayerManager,
    InMemoryChannelLayer,
    channel_layers,
    get_channel_layer,
)

MEMORY = "django_realtime.layers.InMemoryChannelLayer"


@pytest.fixture(autouse=True)
def _fresh_layers() -> Iterator[None]:
    channel_layers.reset()
    yield
    channel_layers.reset()


def manager(**aliases: Any) -> ChannelLayerManager:
    return ChannelLayerManager(aliases)


# Settings


def test_without_the_setting_the_default_alias_is_in_memory(
    settings: Settings,
) -> None:
    del settings.CHANNEL_LAYERS

    assert isinstance(get_channel_layer(), InMemoryChannelLayer)
    assert get_channel_layer("other") is None


def test_an_empty_setting_means_no_channel_layer(settings: Settings) -> None:
    settings.CHANNEL_LAYERS = {}

    assert get_channel_layer() is None
    assert DEFAULT_CHANNEL_LAYER not in channel_layers


def test_the_layer_is_built_once_per_alias() -> None:
    assert get_channel_layer() is get_channel_layer(DEFAULT_CHANNEL_LAYER)


def test_changing_the_setting_rebuilds_the_layers(settings: Settings) -> None:
    before = get_channel_layer()

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": MEMORY, "CONFIG": {"capacity": 7}}
    }
    after = get_channel_layer()

    assert after is not before
    assert isinstance(after, InMemoryChannelLayer)
    assert after.capacity == 7


def test_channels_redis_layers_are_built_from_the_setting(
    settings: Settings,
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379"], "capacity": 42},
        }
    }

    layer: Any = get_channel_layer()

    assert type(layer).__name__ == "RedisChannelLayer"
    assert layer.capacity == 42


def test_a_setting_that_is_not_a_dict_is_rejected(settings: Settings) -> None:
    settings.CHANNEL_LAYERS = ["default"]

    with pytest.raises(InvalidChannelLayerError, match=r"must be a dict.*got list"):
        get_channel_layer()


# Building


def test_config_is_passed_to_the_backend_as_keyword_arguments() -> None:
    layers = manager(default={"BACKEND": MEMORY, "CONFIG": {"expiry": 5}})

    layer: Any = layers["default"]

    assert layer.expiry == 5


def test_make_backend_builds_a_new_layer_each_time() -> None:
    layers = manager(default={"BACKEND": MEMORY})

    assert layers.make_backend("default") is not layers.make_backend("default")


def test_make_test_backend_uses_test_config() -> None:
    layers = manager(
        default={"BACKEND": MEMORY, "CONFIG": {}, "TEST_CONFIG": {"capacity": 2}}
    )

    layer: Any = layers.make_test_backend("default")

    assert layer.capacity == 2


def test_make_test_backend_without_test_config_says_so() -> None:
    layers = manager(default={"BACKEND": MEMORY})

    with pytest.raises(InvalidChannelLayerError, match="'default' has no TEST_CONFIG"):
        layers.make_test_backend("default")


def test_an_unknown_alias_raises_key_error_listing_the_aliases() -> None:
    layers = manager(default={"BACKEND": MEMORY})

    with pytest.raises(KeyError, match=r"'missing'.*\['default'\]"):
        layers["missing"]
    assert "missing" not in layers


def test_an_unknown_backend_names_the_alias_and_the_path() -> None:
    layers = manager(chat={"BACKEND": "no_such_module.Layer"})

    with pytest.raises(
        InvalidChannelLayerError,
        match=r"Cannot import BACKEND 'no_such_module.Layer' of channel layer 'chat'",
    ):
        layers["chat"]


def test_a_missing_class_in_a_real_module_names_the_path() -> None:
    layers = manager(default={"BACKEND": "django_realtime.layers.NoSuchLayer"})

    with pytest.raises(InvalidChannelLayerError, match="NoSuchLayer"):
        layers.make_backend("default")


@pytest.mark.parametrize("config", [{}, {"BACKEND": ""}, {"BACKEND": 3}])
def test_a_missing_backend_says_what_is_needed(config: dict[str, Any]) -> None:
    layers = manager(default=config)

    with pytest.raises(InvalidChannelLayerError, match="needs a 'BACKEND'"):
        layers["default"]


def test_a_backend_that_is_not_callable_is_rejected() -> None:
    layers = manager(
        default={"BACKEND": "django_realtime.layers.DEFAULT_CHANNEL_LAYER"}
    )

    with pytest.raises(InvalidChannelLayerError, match="must be a class, got str"):
        layers["default"]


def test_config_the_backend_rejects_names_alias_and_path() -> None:
    layers = manager(default={"BACKEND": MEMORY, "CONFIG": {"hostz": ["x"]}})

    with pytest.raises(
        InvalidChannelLayerError,
        match=rf"channel layer 'default' from BACKEND '{MEMORY}'.*hostz",
    ):
        layers["default"]


def test_config_that_is_not_a_dict_is_rejected() -> None:
    layers = manager(default={"BACKEND": MEMORY, "CONFIG": ["capacity"]})

    with pytest.raises(InvalidChannelLayerError, match=r"\['CONFIG'\] must be a dict"):
        layers["default"]


def test_an_alias_configured_with_something_else_than_a_dict_is_rejected() -> None:
    layers = manager(default=MEMORY)

    with pytest.raises(InvalidChannelLayerError, match="must be a dict with a"):
        layers["default"]


def test_a_channels_1_routing_key_is_rejected() -> None:
    layers = manager(default={"BACKEND": MEMORY, "ROUTING": "app.routing"})

    with pytest.raises(InvalidChannelLayerError, match="'ROUTING' key"):
        layers["default"]


# Swapping


def test_set_swaps_a_layer_in_and_returns_the_old_one() -> None:
    layers = manager(default={"BACKEND": MEMORY})
    original = layers["default"]
    replacement = InMemoryChannelLayer()

    assert layers.set("default", replacement) is original
    assert layers["default"] is replacement


def test_set_works_for_an_alias_that_is_not_configured() -> None:
    layers = manager()
    layer = InMemoryChannelLayer()

    assert layers.set("extra", layer) is None
    assert "extra" in layers
    assert layers["extra"] is layer


def test_set_none_forgets_the_layer_so_it_is_built_again() -> None:
    layers = manager(default={"BACKEND": MEMORY})
    original = layers["default"]

    layers.set("default", None)

    assert layers["default"] is not original


def test_the_global_manager_serves_get_channel_layer() -> None:
    layer = InMemoryChannelLayer()
    channel_layers.set("default", layer)

    assert get_channel_layer() is layer
