"""Django settings of the streams fault-injection run (benchmarks.stress.stream_faults).

Read from the environment the driver sets for each server process:
``BENCH_STREAM_REDIS`` (the Redis URL), ``BENCH_STREAM_PREFIX`` (this run's
key prefix, so runs never share streams) and ``BENCH_STREAM_HISTORY`` (how
many publications each stream keeps).
"""

import os

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import (
    INSTALLED_APPS,
    console_logging,
    redis_streams,
)

INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS]
# The HTTP transports' views (no middleware: the clients have no session).
ROOT_URLCONF = "benchmarks.stress.stream_faults.app"

# The stream consumer needs no channel layer.
CHANNEL_LAYERS = {"default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}}

REALTIME = redis_streams(
    os.environ.get("BENCH_STREAM_REDIS", "redis://127.0.0.1:6379"),
    os.environ.get("BENCH_STREAM_PREFIX", "bench"),
    int(os.environ.get("BENCH_STREAM_HISTORY", "1000")),
)

# The driver counts the servers' warnings and the gaps they noticed.
LOGGING = console_logging
