"""Settings shared by the suite's Django projects (ours and Channels').

Read from the environment the suite sets for each server process:
``BENCH_DB`` (the SQLite file made at set-up) and ``BENCH_LAYER`` (the JSON
of ``CHANNEL_LAYERS["default"]``).
"""

import json
import os

SECRET_KEY = "django_realtime-benchmarks-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]

# Sessions live in the database (Django's default engine), as in production.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB", ":memory:"),
    }
}

CHANNEL_LAYERS = {"default": json.loads(os.environ.get("BENCH_LAYER", "null"))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def redis_streams(url: str, prefix: str, history: int) -> dict[str, object]:
    """Return ``REALTIME`` for streams in Redis, bounded by count only.

    Count only, so that a driver knows the history window exactly.
    """
    return {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
            "OPTIONS": {"url": url, "prefix": prefix},
        },
        "STREAM_HISTORY": {
            "*": {"MAX_COUNT": history, "MAX_BYTES": None, "MAX_AGE": None}
        },
    }


#: ``LOGGING`` for drivers that read django_realtime's warnings from a
#: server's output (lowercase, so that it is not a setting itself).
console_logging = {
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
