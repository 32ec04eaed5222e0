"""Settings of the example project.

They run as they are, on the embedded defaults: SQLite and the in-memory
channel layer. The environment changes what a deployment needs:

``DJANGO_SECRET_KEY``
    The secret key; a development key is used when it is unset.
``DJANGO_DEBUG``
    ``0`` turns ``DEBUG`` off; it is on otherwise.
``REDIS_URL``
    Use this Redis server (``redis://127.0.0.1:6379``) for the channel layer
    and for the history of streams, so that several server processes and
    ``runworker`` share groups, channels and streams: django_realtime's own
    Redis layer and its ``RedisHistoryStore``. Without it, streams keep their
    history in the server process and a restart starts them anew.
``REDIS_LAYER_BACKEND``
    The ``BACKEND`` of that layer instead, for example
    ``channels_redis.core.RedisChannelLayer``.
``EXAMPLE_DB_PATH``
    Where the SQLite database lives, instead of ``db.sqlite3`` beside
    ``manage.py``.
"""

import importlib.util
import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-example-project-development-key"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") != "0"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    # Before staticfiles, so that its ASGI runserver is the one Django runs.
    "django_realtime",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "example_project.chat",
    "example_project.jobs",
    "example_project.c10k",
    "example_project.life",
]

MIDDLEWARE = [
    # An id per request (the proxy's X-Request-ID if it set one), carried
    # into the consumers that a view's sends reach, and into log lines.
    "django_realtime.middleware.correlation.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "example_project.wsgi.application"
ASGI_APPLICATION = "example_project.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH") or BASE_DIR / "db.sqlite3",
    }
}

REDIS_URL = os.environ.get("REDIS_URL")
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": os.environ.get(
                "REDIS_LAYER_BACKEND", "django_realtime.layers.redis.RedisChannelLayer"
            ),
            "CONFIG": {"hosts": [REDIS_URL]},
        },
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"},
    }

# Streams (the chat rooms, the jobs page) keep their history in memory by
# default; with REDIS_URL every server process shares it through Redis.
REALTIME: dict[str, Any] = {}
if REDIS_URL:
    REALTIME["STREAM_STORE"] = {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {"url": REDIS_URL, "prefix": "example"},
    }
# Prometheus metrics at /metrics when prometheus-client is installed
# (pip install -e ".[example]").
REALTIME["METRICS"] = importlib.util.find_spec("prometheus_client") is not None

# The most WebSocket connections one server process holds (see asgi.py): under
# the process's file descriptor limit, with room for the database and Redis.
MAX_CONNECTIONS = int(os.environ.get("MAX_CONNECTIONS", "19900"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

# Django's auth views, under /accounts/ (see urls.py): the chat needs a login.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/chat/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line names the message it came from (frame, request, layer
    # message): see docs/topics/observability.rst.
    "filters": {
        "correlation": {
            "()": "django_realtime.middleware.correlation.CorrelationIdFilter"
        }
    },
    "formatters": {
        "plain": {"format": "%(levelname)s [%(correlation_id)s] %(name)s: %(message)s"}
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["correlation"],
            "formatter": "plain",
        }
    },
    "loggers": {
        "example_project": {"handlers": ["console"], "level": "INFO"},
        "django_realtime": {"handlers": ["console"], "level": "WARNING"},
    },
}
