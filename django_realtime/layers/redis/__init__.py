"""A channel layer on Redis: queues per channel, group fan-out in one round trip.

``CHANNEL_LAYERS = {"default": {"BACKEND":
"django_realtime.layers.redis.RedisChannelLayer", "CONFIG": {...}}}``; the
options are documented on :class:`RedisChannelLayer`.
"""

from django_realtime.layers.redis._core import RedisLayerStats
from django_realtime.layers.redis.layer import RedisChannelLayer

__all__ = ["RedisChannelLayer", "RedisLayerStats"]
