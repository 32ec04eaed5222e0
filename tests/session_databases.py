"""Run a test on SQLite and on PostgreSQL: one body, both databases.

Sessions and users live in whichever database the ``database`` fixture
pins every model to, through a router; the ``postgres`` alias is the real
PostgreSQL server (tests marked ``postgres``).
"""

from __future__ import annotations

from typing import Any

import pytest

DATABASES = ["default", "postgres"]

#: Put on the tests that use the ``database`` fixture.
uses_both_databases = pytest.mark.django_db(transaction=True, databases=DATABASES)


class PinnedRouter:
    """Send queries for users and sessions to ``PinnedRouter.alias``.

    Only those two models: content types and permissions stay where Django's
    test machinery puts them.
    """

    alias = "default"
    models = frozenset({("auth", "user"), ("sessions", "session")})

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        if (model._meta.app_label, model._meta.model_name) in self.models:
            return PinnedRouter.alias
        return None

    db_for_write = db_for_read


@pytest.fixture(
    params=[
        # Each database a test may use is emptied after it: a run on SQLite
        # leaves PostgreSQL alone. (Content types and permissions stay on
        # SQLite: a run on PostgreSQL may read them.) These marks take the
        # place of ``uses_both_databases`` on the test's module or class.
        pytest.param(
            "default",
            marks=pytest.mark.django_db(transaction=True, databases=["default"]),
        ),
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.django_db(transaction=True, databases=DATABASES),
            ],
        ),
    ],
    ids=["sqlite", "postgresql"],
)
def database(request: pytest.FixtureRequest, settings: Any) -> Any:
    """Pin sessions and users to SQLite, then to PostgreSQL.

    A ``django_db`` mark on the test function itself would take precedence
    over the one this fixture's parameters bring: put it on the module.
    """
    PinnedRouter.alias = request.param
    settings.DATABASE_ROUTERS = ["tests.session_databases.PinnedRouter"]
    from django.contrib.auth.models import User
    from django.db import router

    assert router.db_for_write(User) == request.param
    yield request.param
    PinnedRouter.alias = "default"


@pytest.fixture(params=["db", "cache", "cached_db", "file"])
def engine(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> str:
    """Use each server-side session engine Django ships."""
    settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{request.param}"
    settings.SESSION_FILE_PATH = str(tmp_path)
    return str(request.param)
