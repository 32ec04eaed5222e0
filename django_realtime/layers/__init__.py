"""Channel layers: send messages to channels and groups, across consumers.

Configure them in ``CHANNEL_LAYERS`` (see :mod:`django_realtime.layers.registry`)
and get one with :func:`get_channel_layer`; consumers find theirs in
``self.channel_layer``. The in-memory layer is the default; channels-redis
layers work unmodified.
"""

from __future__ import annotations

from django_realtime.layers._core import LayerStats
from django_realtime.layers.base import BaseChannelLayer, ChannelLayer
from django_realtime.layers.memory import InMemoryChannelLayer
from django_realtime.layers.registry import (
    DEFAULT_CHANNEL_LAYER,
    ChannelLayerManager,
    channel_layers,
    get_channel_layer,
)

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "BaseChannelLayer",
    "ChannelLayer",
    "ChannelLayerManager",
    "InMemoryChannelLayer",
    "LayerStats",
    "channel_layers",
    "get_channel_layer",
]
