"""Settings with the admin for the ops console tests, and their users."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from django_realtime.ops import console, drain

ADMIN_SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        *settings.INSTALLED_APPS,
        "django.contrib.admin",
        "django.contrib.messages",
    ],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    "TEMPLATES": [
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
    ],
    "ROOT_URLCONF": "tests.integration.ops_console.urls",
}


@pytest.fixture
def with_admin(transactional_db: None) -> Iterator[None]:
    """Install the admin (its log's table too) for the test."""
    with override_settings(**ADMIN_SETTINGS):
        from django.contrib.admin.models import LogEntry

        with connection.schema_editor() as editor:
            editor.create_model(LogEntry)
        try:
            yield
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(LogEntry)


@pytest.fixture(autouse=True)
def _accepting() -> Iterator[None]:
    # The test settings have no admin, so ready() left the console out: the
    # page's process would have it (idempotent).
    console.install()
    yield
    drain.resume()
