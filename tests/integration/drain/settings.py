"""Settings of the server processes of the drain tests.

From the environment the tests set: ``DRAIN_TEST_OPTIONS`` (the JSON of
``REALTIME["DRAIN"]``), ``DRAIN_TEST_REDIS_PREFIX`` (when set, the default
channel layer and the stream history live in Redis under this prefix;
otherwise in memory) and ``DRAIN_TEST_GROUP_EXPIRY`` (the Redis layer's
``group_expiry``).
"""

import json
import os

SECRET_KEY = "django_realtime-drain-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["django_realtime"]
DATABASES: dict[str, object] = {}
ROOT_URLCONF = "tests.integration.drain.app"
ASGI_APPLICATION = "tests.integration.drain.app.application"

_prefix = os.environ.get("DRAIN_TEST_REDIS_PREFIX")
REALTIME: dict[str, object] = {
    "DRAIN": json.loads(os.environ.get("DRAIN_TEST_OPTIONS", "{}"))
}
if _prefix:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
            "CONFIG": {
                "hosts": ["redis://127.0.0.1:6379"],
                "prefix": _prefix,
                "group_expiry": float(os.environ.get("DRAIN_TEST_GROUP_EXPIRY", 86400)),
            },
        }
    }
    REALTIME["STREAM_STORE"] = {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {"url": "redis://127.0.0.1:6379", "prefix": _prefix},
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_realtime.ops.drain": {"handlers": ["console"], "level": "INFO"}
    },
}
