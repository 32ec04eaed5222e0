"""Django settings of the soak run (benchmarks.stress.soak).

Read from the environment the driver sets for the server process:
``BENCH_SOAK_LAYER`` (``memory`` or ``redis``), ``BENCH_SOAK_REDIS`` (the
Redis URL) and ``BENCH_SOAK_PREFIX`` (this run's key prefix; every Redis
connection of the server is named after it, so that the driver finds them
in ``CLIENT LIST``).
"""

import os

from benchmarks._settings_base import *  # noqa: F403
from benchmarks._settings_base import INSTALLED_APPS

INSTALLED_APPS = ["django_realtime", *INSTALLED_APPS]

_LAYER = os.environ.get("BENCH_SOAK_LAYER", "memory")
_PREFIX = os.environ.get("BENCH_SOAK_PREFIX", "bench-soak")

if _LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": os.environ.get(
                            "BENCH_SOAK_REDIS", "redis://127.0.0.1:6379"
                        ),
                        # The pub/sub connection gets its own name, which
                        # starts with the layer's prefix too.
                        "client_name": f"{_PREFIX}-commands",
                    }
                ],
                "prefix": _PREFIX,
            },
        }
    }
elif _LAYER == "memory":
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.memory.InMemoryChannelLayer"}
    }
else:
    raise ValueError(f"Expected BENCH_SOAK_LAYER memory or redis, got {_LAYER!r}.")

# Everything at WARNING and above reaches the server's log, which the driver
# reads for errors and tracebacks.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
