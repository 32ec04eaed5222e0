"""Settings for the test suite."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django_realtime-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django_realtime",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "tests",
    "example_project.chat",
    "example_project.jobs",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "tests.urls"

# Tests make and log in many users: a fast hasher, as Django's docs advise
# for test settings (the default one spends a CPU-second per password).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ASGI_APPLICATION = "tests.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "test.sqlite3",
        "TEST": {"NAME": BASE_DIR / f"test_db_{os.getpid()}.sqlite3"},
    },
    # The real PostgreSQL on this machine, for tests marked "postgres": SQLite
    # hides connection bugs. The test database name carries the pid so that
    # concurrent runs do not collide.
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "USER": "postgres",
        "NAME": "django_realtime",
        # Threads that outlive a test keep their connections; health checks
        # replace those a test terminated (see tests/integration/test_db.py).
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": f"test_django_realtime_{os.getpid()}", "DEPENDENCIES": []},
    },
}

CHANNEL_LAYERS = {
    "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"},
}

# The same database through Django's connection pool (psycopg_pool).
DATABASES["postgres_pool"] = {
    **DATABASES["postgres"],
    "OPTIONS": {"pool": {"min_size": 1, "max_size": 3, "timeout": 10}},
    "TEST": {"MIRROR": "postgres"},
}

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
