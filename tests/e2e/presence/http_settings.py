"""Settings of the presence-over-HTTP test servers: Redis, a grace of 1 s.

Keys under the prefix in ``PRESENCE_E2E_PREFIX``, shared by the test's
server processes.
"""

import os

from tests.e2e.streams_http.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.presence.http_app"
ASGI_APPLICATION = "tests.e2e.presence.http_app.application"
REALTIME = {
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {
            "url": "redis://127.0.0.1:6379",
            "prefix": os.environ.get("PRESENCE_E2E_PREFIX", "presence-http-e2e"),
        },
    },
    "PRESENCE": {"EXPIRY": 5, "GRACE": 1.0, "BATCH": 0.05},
}
