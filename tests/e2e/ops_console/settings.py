"""Settings of the server processes of the ops console's end-to-end tests.

From the environment: ``OPS_TEST_DIR`` (the directory of the database and
of the SQLite file of the channel layer and streams) and
``OPS_TEST_REDIS_PREFIX`` (when set, the layer and the streams are in Redis
under this prefix instead).
"""

import os
from pathlib import Path

SECRET_KEY = "django_realtime-ops-console-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django_realtime",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.e2e.ops_console.app"
ASGI_APPLICATION = "tests.e2e.ops_console.app.application"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_dir = Path(os.environ.get("OPS_TEST_DIR", "."))
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _dir / "db.sqlite3"}
}
_prefix = os.environ.get("OPS_TEST_REDIS_PREFIX")
REALTIME: dict[str, object]
if _prefix:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.redis.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379"], "prefix": _prefix},
        }
    }
    REALTIME = {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
            "OPTIONS": {"url": "redis://127.0.0.1:6379", "prefix": _prefix},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
            "CONFIG": {"path": _dir / "realtime.sqlite3"},
        }
    }
    REALTIME = {
        "STREAM_STORE": {
            "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
            "OPTIONS": {"path": _dir / "realtime.sqlite3"},
        }
    }
