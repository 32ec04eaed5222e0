"""Django settings of the suite's Channels project."""

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import CHANNEL_LAYERS, INSTALLED_APPS

INSTALLED_APPS = ["channels", *INSTALLED_APPS]

if CHANNEL_LAYERS["default"] is None:
    CHANNEL_LAYERS["default"] = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
