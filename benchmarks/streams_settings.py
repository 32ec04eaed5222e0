"""Django settings of the streams fault-injection run (benchmarks.stream_faults).

Read from the environment the driver sets for each server process:
``BENCH_STREAM_REDIS`` (the Redis URL), ``BENCH_STREAM_PREFIX`` (this run's
key prefix, so runs never share streams) and ``BENCH_STREAM_HISTORY`` (how
many publications each stream keeps).
"""

import os

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import INSTALLED_APPS

INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS]

# The stream consumer needs no channel layer.
CHANNEL_LAYERS = {"default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}}

REALTIME = {
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {
            "url": os.environ.get("BENCH_STREAM_REDIS", "redis://127.0.0.1:6379"),
            "prefix": os.environ.get("BENCH_STREAM_PREFIX", "bench"),
        },
    },
    # Bounded by count only, so that the driver knows the window exactly.
    "STREAM_HISTORY": {
        "*": {
            "MAX_COUNT": int(os.environ.get("BENCH_STREAM_HISTORY", "1000")),
            "MAX_BYTES": None,
            "MAX_AGE": None,
        }
    },
}

# The driver counts the servers' warnings and the gaps they noticed.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_realtime": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
        },
    },
}
