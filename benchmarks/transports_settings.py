"""Django settings of the transports group (``benchmarks.transports_app``)."""

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import INSTALLED_APPS

INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS]
ROOT_URLCONF = "benchmarks.transports_app"

# As a project that serves pages: sessions and users for the HTTP views.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

# Streams need no channel layer; history in memory (one server process),
# a window larger than any run publishes, so that nothing is lost to it.
CHANNEL_LAYERS = {"default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}}
REALTIME = {
    "STREAM_HISTORY": {"*": {"MAX_COUNT": 10_000, "MAX_BYTES": None, "MAX_AGE": None}}
}
