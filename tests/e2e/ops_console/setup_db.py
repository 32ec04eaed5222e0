"""Migrate the test database and print a logged-in operator's session key.

Run as ``python -m tests.e2e.ops_console.setup_db`` with the settings of
the server processes; creates the staff user ``operator`` with both
permissions of the ops page, and ``alice``, whose session key comes second.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.ops_console.settings")
django.setup()

from django.contrib.auth import (  # noqa: E402
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
)
from django.contrib.auth.models import Permission, User  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402


def session_of(user: User) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)


call_command("migrate", verbosity=0)
operator = User.objects.create_user("operator", password="pw", is_staff=True)
operator.user_permissions.set(
    Permission.objects.filter(codename__in=["view_realtime_ops", "change_realtime_ops"])
)
alice = User.objects.create_user("alice", password="pw")
print(session_of(operator), session_of(alice))
