"""Log a user in from the command line: a session in the project's store.

:func:`open_session` makes a session for a user, as Django's test client
``force_login()`` does (``django.contrib.auth.login()`` on a bare request,
so ``user_logged_in`` fires and the user's ``last_login`` moves), and
saves it in ``settings.SESSION_ENGINE``'s store. Its cookie, sent with a
handshake, makes the connection that user's, for any server that shares
the store and ``SECRET_KEY``. :meth:`UserSession.close` deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.core.management.base import CommandError
from django.http import HttpRequest

from django_realtime.ops.cli.arguments import USAGE_ERROR
from django_realtime.ops.logs import printable

__all__ = ["UserSession", "find_user", "open_session"]


@dataclass
class UserSession:
    """A saved session of one user.

    Attributes:
        username: The user's name.
        session: The session, saved in the project's store.
    """

    username: str
    session: SessionBase

    @property
    def cookie(self) -> str:
        """Return the ``Cookie`` header value that names this session."""
        return f"{settings.SESSION_COOKIE_NAME}={self.session.session_key}"

    def close(self) -> None:
        """Delete the session from the store: its cookie logs nobody in now."""
        self.session.delete()


def find_user(username: str) -> AbstractBaseUser:
    """Return the user whose ``USERNAME_FIELD`` is ``username``.

    Raises:
        CommandError: there is no such user (exit code :data:`USAGE_ERROR`).
    """
    model = get_user_model()
    try:
        user: AbstractBaseUser = model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(
            f"No user named {printable(repr(username))} (looked up by "
            f"{model.__name__}.{model.USERNAME_FIELD}).",
            returncode=USAGE_ERROR,
        ) from None
    return user


def open_session(username: str) -> UserSession:
    """Log ``username`` in to a new session, saved in the project's store.

    The session names the first of ``AUTHENTICATION_BACKENDS`` as the
    user's backend.

    Raises:
        CommandError: there is no such user, or the user is inactive (exit
            code :data:`USAGE_ERROR`).
    """
    user = find_user(username)
    if not getattr(user, "is_active", True):
        raise CommandError(
            f"User {printable(repr(username))} is inactive: a server would treat "
            "the connection as anonymous.",
            returncode=USAGE_ERROR,
        )
    engine = import_module(settings.SESSION_ENGINE)
    request = HttpRequest()
    request.session = engine.SessionStore()
    login(request, cast(Any, user), backend=settings.AUTHENTICATION_BACKENDS[0])
    request.session.save()
    return UserSession(username, request.session)
