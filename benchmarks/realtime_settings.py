"""Django settings of the suite's django_realtime project."""

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import CHANNEL_LAYERS, INSTALLED_APPS

INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS]

if CHANNEL_LAYERS["default"] is None:
    CHANNEL_LAYERS["default"] = {
        "BACKEND": "django_realtime.layers.InMemoryChannelLayer"
    }
