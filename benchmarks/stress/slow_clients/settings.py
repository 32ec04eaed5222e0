"""Django settings of the slow-client run (benchmarks.stress.slow_clients).

Read from the environment the driver sets for each server process:
``BENCH_SLOW_REDIS`` (the Redis URL), ``BENCH_SLOW_PREFIX`` (this run's key
and topic prefix, for the history store and the channel layer alike),
``BENCH_SLOW_HISTORY`` (publications kept per stream) and
``BENCH_SLOW_CAPACITY`` and ``BENCH_SLOW_EXPIRY`` (the channel layer's
capacity per channel and its expiry in seconds).
"""

import os

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import (
    INSTALLED_APPS,
    console_logging,
    redis_streams,
)

INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS]

_REDIS = os.environ.get("BENCH_SLOW_REDIS", "redis://127.0.0.1:6379")
_PREFIX = os.environ.get("BENCH_SLOW_PREFIX", "bench-slow")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": [_REDIS],
            "prefix": f"{_PREFIX}-layer",
            "capacity": int(os.environ.get("BENCH_SLOW_CAPACITY", "100")),
            "expiry": float(os.environ.get("BENCH_SLOW_EXPIRY", "60")),
        },
    }
}

REALTIME = redis_streams(
    _REDIS,
    _PREFIX,
    int(os.environ.get("BENCH_SLOW_HISTORY", "1000")),
)

# The driver reads the slow-client warnings (catch-ups, closes, layer drops)
# from the server's log.
LOGGING = console_logging
