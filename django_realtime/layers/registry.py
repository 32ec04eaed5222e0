"""Find channel layers by alias, as configured in ``CHANNEL_LAYERS``.

The setting has the shape Channels uses::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379"]},
        },
    }

Without a ``CHANNEL_LAYERS`` setting, the ``"default"`` alias is an
:class:`~django_realtime.layers.memory.InMemoryChannelLayer`; set it to ``{}``
to have no channel layer at all. Settings are read on first use, never at
import time, and layers are built again after ``override_settings`` changes
``CHANNEL_LAYERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from django_realtime.exceptions import InvalidChannelLayerError
from django_realtime.layers.base import ChannelLayer
from django_realtime.layers.postgres import checks as _postgres_checks  # noqa: F401
from django_realtime.layers.rabbitmq import checks as _rabbitmq_checks  # noqa: F401
from django_realtime.layers.sqlite import checks as _sqlite_checks  # noqa: F401
from django_realtime.ops import metrics

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "EMBEDDED_CHANNEL_LAYERS",
    "ChannelLayerManager",
    "channel_layers",
    "get_channel_layer",
]

#: The alias consumers use unless told otherwise.
DEFAULT_CHANNEL_LAYER = "default"

#: What ``CHANNEL_LAYERS`` means when the setting is absent.
EMBEDDED_CHANNEL_LAYERS: Mapping[str, Mapping[str, Any]] = {
    DEFAULT_CHANNEL_LAYER: {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"},
}

_SETTING = "CHANNEL_LAYERS"


class ChannelLayerManager:
    """Build channel layers from their configuration and keep one per alias.

    Args:
        configs: Configurations in the shape of ``CHANNEL_LAYERS``. By
            default the ``CHANNEL_LAYERS`` setting is read, lazily, and the
            built layers are dropped whenever the setting changes.
    """

    def __init__(self, configs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._configs = configs
        self.backends: dict[str, ChannelLayer] = {}
        if configs is None:
            setting_changed.connect(self._on_setting_changed)

    @property
    def configs(self) -> Mapping[str, Mapping[str, Any]]:
        """Return the configurations, from the settings unless given."""
        if self._configs is not None:
            return self._configs
        configs: object = getattr(settings, _SETTING, None)
        if configs is None:
            return EMBEDDED_CHANNEL_LAYERS
        if not isinstance(configs, Mapping):
            raise InvalidChannelLayerError(
                f"{_SETTING} must be a dict of aliases to layer configurations, "
                f"got {type(configs).__name__}."
            )
        return configs

    def make_backend(self, alias: str) -> ChannelLayer:
        """Build a new layer from the ``CONFIG`` of ``alias``.

        Raises:
            KeyError: No layer is configured under ``alias``.
            InvalidChannelLayerError: The configuration is unusable: no
                ``BACKEND``, a path that does not import, or ``CONFIG``
                arguments the backend rejects.
        """
        config = self._config(alias)
        return self._build(alias, config, config.get("CONFIG", {}), "CONFIG")

    def make_test_backend(self, alias: str) -> ChannelLayer:
        """Build a new layer from the ``TEST_CONFIG`` of ``alias``.

        Raises:
            KeyError: No layer is configured under ``alias``.
            InvalidChannelLayerError: ``alias`` has no ``TEST_CONFIG``, or the
                configuration is unusable.
        """
        config = self._config(alias)
        if "TEST_CONFIG" not in config:
            raise InvalidChannelLayerError(
                f"Channel layer {alias!r} has no TEST_CONFIG; add one to "
                f"{_SETTING}[{alias!r}]."
            )
        return self._build(alias, config, config["TEST_CONFIG"], "TEST_CONFIG")

    def __getitem__(self, alias: str) -> ChannelLayer:
        """Return the layer for ``alias``, building it on first use.

        Raises:
            KeyError: No layer is configured under ``alias``.
        """
        try:
            return self.backends[alias]
        except KeyError:
            layer = self.backends[alias] = self.make_backend(alias)
            metrics.instrument_layer(layer, alias)
            return layer

    def __contains__(self, alias: object) -> bool:
        """Return whether a layer is configured (or set) under ``alias``."""
        return alias in self.backends or alias in self.configs

    def set(self, alias: str, layer: ChannelLayer | None) -> ChannelLayer | None:
        """Use ``layer`` for ``alias`` and return the layer it replaces, if any.

        Tests use it to swap a layer in and out::

            old = channel_layers.set("default", InMemoryChannelLayer())
            ...
            channel_layers.set("default", old)

        Passing ``None`` forgets the alias's layer, so the next use builds it
        again from the configuration.
        """
        old = self.backends.pop(alias, None)
        if layer is not None:
            self.backends[alias] = layer
        return old

    def reset(self) -> None:
        """Forget every built layer; the next use builds them again."""
        self.backends = {}

    # Internals

    def _on_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == _SETTING:
            self.reset()

    def _config(self, alias: str) -> Mapping[str, Any]:
        configs = self.configs
        if alias not in configs:
            raise KeyError(
                f"No channel layer {alias!r} in {_SETTING}; configured aliases "
                f"are {sorted(configs)!r}."
            )
        config = configs[alias]
        if not isinstance(config, Mapping):
            raise InvalidChannelLayerError(
                f"{_SETTING}[{alias!r}] must be a dict with a 'BACKEND' key, "
                f"got {type(config).__name__}."
            )
        if "ROUTING" in config:
            raise InvalidChannelLayerError(
                f"{_SETTING}[{alias!r}] has a 'ROUTING' key, which channel "
                "layers no longer use; remove it."
            )
        return config

    def _build(
        self,
        alias: str,
        config: Mapping[str, Any],
        kwargs: object,
        kwargs_key: str,
    ) -> ChannelLayer:
        path = config.get("BACKEND")
        if not isinstance(path, str) or not path:
            raise InvalidChannelLayerError(
                f"{_SETTING}[{alias!r}] needs a 'BACKEND': the dotted path of "
                f"a channel layer class, got {path!r}."
            )
        if not isinstance(kwargs, Mapping):
            raise InvalidChannelLayerError(
                f"{_SETTING}[{alias!r}][{kwargs_key!r}] must be a dict of "
                f"keyword arguments, got {type(kwargs).__name__}."
            )
        try:
            backend = import_string(path)
        except ImportError as error:
            raise InvalidChannelLayerError(
                f"Cannot import BACKEND {path!r} of channel layer {alias!r}: {error}"
            ) from error
        if not callable(backend):
            raise InvalidChannelLayerError(
                f"BACKEND {path!r} of channel layer {alias!r} must be a class, "
                f"got {type(backend).__name__}."
            )
        try:
            layer: ChannelLayer = backend(**kwargs)
        except TypeError as error:
            raise InvalidChannelLayerError(
                f"Cannot build channel layer {alias!r} from BACKEND {path!r} "
                f"with {kwargs_key} {dict(kwargs)!r}: {error}"
            ) from error
        return layer


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> ChannelLayer | None:
    """Return the channel layer configured under ``alias``, or ``None``.

    ``None`` means ``CHANNEL_LAYERS`` has no such alias (``CHANNEL_LAYERS =
    {}`` turns channel layers off).

    Raises:
        InvalidChannelLayerError: The alias is configured but unusable.
    """
    if alias not in channel_layers:
        return None
    return channel_layers[alias]


#: The process-wide manager, reading ``CHANNEL_LAYERS``.
channel_layers = ChannelLayerManager()


def _layer_drops(layer: Any) -> int | None:
    """Return the messages ``layer`` dropped for capacity, if it counts them."""
    stats = getattr(layer, "stats", None)
    if stats is None:
        return None
    # The in-memory layer, and the Redis layer (its local fan-out, its
    # queues, and its remote channels).
    local = getattr(stats, "local", stats)
    total = getattr(local, "dropped_messages", 0)
    total += getattr(stats, "queue_dropped", 0) + getattr(stats, "remote_dropped", 0)
    return int(total)


def _metrics_source() -> list[tuple[str, str, int]]:
    found = []
    for alias, layer in list(channel_layers.backends.items()):
        dropped = _layer_drops(layer)
        if dropped is not None:
            found.append(("capacity_drops", alias, dropped))
    return found


metrics.add_source(_metrics_source)
