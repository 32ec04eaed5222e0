"""Settings of the example project.

They run as they are, on the embedded defaults: SQLite for the database,
and one more SQLite file, ``realtime.sqlite3`` beside ``manage.py``, for the
channel layer and the history of streams
(:class:`~django_realtime.layers.sqlite.SQLiteChannelLayer` and
:class:`~django_realtime.streams.stores.sqlite.SQLiteHistoryStore`). Every
process of the project on this machine shares it: ``runserver``,
``runworker`` (the jobs page), and ``manage.py shell``, whose ``publish()``
reaches the open pages; streams resume across a server restart. The
environment changes what a deployment needs:

``DJANGO_DEBUG``
    ``0`` (or ``false``, ``no``, ``off``) turns ``DEBUG`` off; ``1`` (or
    ``true``, ``yes``, ``on``), or no value at all, leaves it on. Anything
    else stops the project with ``ImproperlyConfigured``.
``DJANGO_SECRET_KEY``
    The secret key. Without it, a development key is used while ``DEBUG``
    is on; with ``DEBUG`` off, the project refuses to start until it is set
    to a key of your own.
``DJANGO_ALLOWED_HOSTS``
    Host names the site answers to, separated by commas, instead of
    ``localhost``, ``127.0.0.1`` and ``[::1]``. WebSockets are accepted only
    from pages of these hosts.
``METRICS_ALLOWED_NETWORKS``
    Networks, separated by commas (``10.0.0.0/8,127.0.0.1``), whose
    addresses may read ``/metrics`` without logging in; staff users may read
    it from anywhere. None by default.
``REDIS_URL``
    Use this Redis server (``redis://127.0.0.1:6379``) for the channel layer
    and for the history of streams, so that several server processes and
    ``runworker`` share groups, channels and streams: django_realtime's own
    Redis layer and its ``RedisHistoryStore``, instead of the SQLite file.
    Use it when the processes run on several machines.
``REDIS_LAYER_BACKEND``
    The ``BACKEND`` of that layer instead, for example
    ``channels_redis.core.RedisChannelLayer``.
``EXAMPLE_DB_PATH``
    Where the SQLite database lives, instead of ``db.sqlite3`` beside
    ``manage.py``.
``EXAMPLE_REALTIME_PATH``
    Where the SQLite file of the channel layer and the streams lives,
    instead of ``realtime.sqlite3`` beside ``manage.py``. Processes that
    name the same file meet; its directory must exist.
``EXAMPLE_REALTIME``
    ``memory`` runs on the in-memory layer and store instead (without
    ``REDIS_URL``): one process only, whose groups and streams' history go
    with it (a restart sends pages to reload). ``sqlite``, or no value,
    is the default.
"""

import importlib.util
import ipaddress
import os
from pathlib import Path
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_debug = os.environ.get("DJANGO_DEBUG", "1").strip().lower()
if _debug not in _TRUE | _FALSE:
    raise ImproperlyConfigured(
        "Expected DJANGO_DEBUG to be 1, true, yes or on (DEBUG on), or 0, false, "
        f"no or off (DEBUG off), got {os.environ['DJANGO_DEBUG']!r}."
    )
DEBUG = _debug in _TRUE

# Good for development only: everyone who reads this repository knows it.
DEVELOPMENT_SECRET_KEY = "django-insecure-example-project-development-key"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or DEVELOPMENT_SECRET_KEY
# Django marks the keys that startproject generates "django-insecure-".
if not DEBUG and SECRET_KEY.startswith("django-insecure-"):
    raise ImproperlyConfigured(
        "Expected a secret key of your own in DJANGO_SECRET_KEY with DEBUG off "
        "(DJANGO_DEBUG=0), got "
        + (
            "the development key"
            if SECRET_KEY == DEVELOPMENT_SECRET_KEY
            else "a key starting with 'django-insecure-'"
        )
        + ". Make one with: python -c 'from django.core.management.utils import "
        "get_random_secret_key; print(get_random_secret_key())'"
    )

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get(
        "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"
    ).split(",")
    if host.strip()
]

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
        # Several processes write this file (runserver, runworker, a second
        # server behind a balancer): transactions take the write lock when
        # they begin, so two of them never deadlock on an upgrade from read
        # to write (which SQLite answers with "database is locked" at once,
        # whatever the timeout); a writer waits up to 20 s for another; WAL
        # lets readers go on while one writes.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

REDIS_URL = os.environ.get("REDIS_URL")
EXAMPLE_REALTIME = os.environ.get("EXAMPLE_REALTIME", "").strip().lower() or "sqlite"
if EXAMPLE_REALTIME not in {"sqlite", "memory"}:
    raise ImproperlyConfigured(
        "Expected EXAMPLE_REALTIME to be sqlite (the default) or memory, got "
        f"{os.environ['EXAMPLE_REALTIME']!r}."
    )
REALTIME_PATH = os.environ.get("EXAMPLE_REALTIME_PATH") or BASE_DIR / "realtime.sqlite3"
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
elif EXAMPLE_REALTIME == "memory":
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"},
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
            # A Game of Life watcher hears every cell of its board: at
            # --delay 0 a board of 36 cells sends it bursts of hundreds.
            "CONFIG": {"path": REALTIME_PATH, "capacity": 1000},
        },
    }

# Streams (the chat rooms, the jobs page) keep their history in the same
# SQLite file by default; with REDIS_URL every server process shares it
# through Redis; with EXAMPLE_REALTIME=memory it stays in the server process.
REALTIME: dict[str, Any] = {}
if REDIS_URL:
    REALTIME["STREAM_STORE"] = {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {"url": REDIS_URL, "prefix": "example"},
    }
elif EXAMPLE_REALTIME == "sqlite":
    REALTIME["STREAM_STORE"] = {
        "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
        "OPTIONS": {"path": REALTIME_PATH},
    }
# Django 6's task framework runs the jobs page's work (example_project/jobs/
# tasks.py): its "jobs" queue is the "jobs" channel, which runworker jobs
# serves. On Django 5.2 the page sends its jobs to that channel itself.
if django.VERSION >= (6, 0):
    TASKS = {
        "default": {
            "BACKEND": "django_realtime.tasks.ChannelLayerTaskBackend",
            "QUEUES": ["jobs"],
            "OPTIONS": {"channel_prefix": ""},
        }
    }

# Prometheus metrics at /metrics when prometheus-client is installed
# (pip install -e ".[example]").
REALTIME["METRICS"] = importlib.util.find_spec("prometheus_client") is not None


def _networks(text: str) -> list[str]:
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                "Expected METRICS_ALLOWED_NETWORKS to be networks separated by "
                f"commas, such as 10.0.0.0/8,127.0.0.1, got {item!r} in {text!r}."
            ) from None
    return networks


# Who may read /metrics besides staff users: the addresses of these networks
# (the client address the ASGI server reports), none by default.
METRICS_ALLOWED_NETWORKS = _networks(os.environ.get("METRICS_ALLOWED_NETWORKS", ""))

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
