"""Settings of the project of tests/integration/test_runserver.py, test_worker.py.

``RUNSERVER_DEBUG=1`` turns DEBUG on; ``REALTIME_TEST_REDIS_PREFIX`` switches
the default channel layer to channels-redis with that key prefix.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django_realtime-runserver-project-not-secret"
DEBUG = os.environ.get("RUNSERVER_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django_realtime",
    "django.contrib.staticfiles",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.runserver_project.urls"
ASGI_APPLICATION = "tests.runserver_project.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

_REDIS_PREFIX = os.environ.get("REALTIME_TEST_REDIS_PREFIX")
if _REDIS_PREFIX:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": ["redis://127.0.0.1:6379"],
                "prefix": _REDIS_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
    }
