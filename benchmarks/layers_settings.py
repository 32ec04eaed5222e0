"""Settings for the layer benchmark's processes (:mod:`benchmarks.layers`).

Only what a channel layer may need from Django: the app (its migrations
make the PostgreSQL layer's tables) and ``DATABASES``. ``BENCH_PG_NAME``
names the throwaway PostgreSQL database the benchmark made; without it the
default database is an in-memory SQLite one, which no layer uses.
"""

import os

SECRET_KEY = "django_realtime-benchmarks-not-secret"
USE_TZ = True
INSTALLED_APPS = ["django_realtime"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_PG_NAME = os.environ.get("BENCH_PG_NAME")
DATABASES = {
    "default": (
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _PG_NAME,
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        }
        if _PG_NAME
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    )
}
