"""Settings of the HTTP stream transports' test servers: Redis history, CSRF on.

The history is in Redis under the prefix in ``STREAMS_HTTP_PREFIX``, so
that every server process of a test shares it.
"""

import os

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.streams_http.app"
ASGI_APPLICATION = "tests.e2e.streams_http.app.application"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
CHANNEL_LAYERS = {}
REALTIME = {
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {
            "url": "redis://127.0.0.1:6379",
            "prefix": os.environ.get("STREAMS_HTTP_PREFIX", "streams-http-test"),
        },
    },
}
