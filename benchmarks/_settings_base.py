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
