"""The logged-in user of a connection, from the handshake's session cookie.

:func:`AuthMiddlewareStack` puts ``scope["session"]`` and ``scope["user"]``
in every connection's scope. The session and its user are read once, when
the connection arrives, in one call on the sync pool with Django's
``get_user()`` (its ``aget_user()`` would hop to a thread twice, through one
thread shared by the whole process), so ``scope["user"]`` is a
real user object (or ``AnonymousUser``) that async and sync handlers read
without a database query. Django's rules apply unchanged: the session's
auth hash must match the user's password hash under ``SECRET_KEY`` or one of
``SECRET_KEY_FALLBACKS``, and the backend must still be in
``AUTHENTICATION_BACKENDS``.

:func:`login` and :func:`logout` are coroutines under Channels' names
(``await login(scope, user)``); sync handlers call them through
``asgiref.sync.async_to_sync``. Unlike Channels, both persist the session.
:func:`login` rotates the session key as Django's ``login()`` does; where
the new cookie cannot go with the handshake answer, the client gets it
through a session frame (:mod:`django_realtime.middleware.handoff`).
:func:`logout` flushes the session as Django does, which logs the cookie
out for HTTP requests as well.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    aget_user,
    alogout,
    get_user as django_get_user,
)
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from django_realtime.delivery.db import call_with_fresh_connections
from django_realtime.delivery.sync import run_sync
from django_realtime.middleware.handoff import handoff_url
from django_realtime.sessions import (
    CookieMiddleware,
    SessionMiddleware,
    cookie_settable,
    hand_over_session,
    handshake_answered,
)
from django_realtime.types import ASGIApp, Scope

__all__ = ["AuthMiddleware", "AuthMiddlewareStack", "get_user", "login", "logout"]

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser


class _ConnectionRequest:
    """Stand in for the ``HttpRequest`` that Django's auth functions take.

    ``aget_user()`` reads ``request.session``; ``alogout()`` awaits
    ``request.auser()`` to tell its signal who logs out, flushes
    ``request.session`` and sets ``request.user`` (and, in Django 6,
    ``request.auser``). Receivers of ``user_logged_in`` and
    ``user_logged_out`` get this object as ``request``; ``scope`` is there for
    them.
    """

    def __init__(self, scope: Scope, session: SessionBase) -> None:
        self.scope = scope
        self.session = session
        self.user: User = scope.get("user") or AnonymousUser()

    async def auser(self) -> User:
        """Return the connection's user."""
        return self.user


def _session(scope: Scope, caller: str) -> SessionBase:
    session = scope.get("session")
    if not isinstance(session, SessionBase):
        raise ValueError(
            f"{caller}() expected a Django session in scope['session'], got "
            f"{type(session).__name__}: wrap the application in "
            "AuthMiddlewareStack (or SessionMiddlewareStack)."
        )
    return session


async def get_user(scope: Scope) -> User:
    """Return the user of the session in ``scope["session"]``.

    Returns ``AnonymousUser`` when the session has no user, or its auth hash
    matches neither ``SECRET_KEY`` nor ``SECRET_KEY_FALLBACKS`` (the session
    is then flushed, as Django does). A match under a fallback key upgrades
    the session to the current key and rotates its session key; the new
    cookie is sent with the handshake answer.

    Raises:
        ValueError: ``scope["session"]`` is missing.
    """
    request = _ConnectionRequest(scope, _session(scope, "get_user"))
    user: User = await aget_user(cast(HttpRequest, request))
    return user


def _connect_user(scope: Scope, session: SessionBase) -> User:
    """Read the session if need be and return its user (in a pool thread)."""
    user: User = django_get_user(cast(HttpRequest, _ConnectionRequest(scope, session)))
    return user


class AuthMiddleware:
    """Put the session's user in ``scope["user"]``, looked up at connect time.

    Needs ``scope["session"]`` (:class:`~django_realtime.sessions.SessionMiddleware`);
    use :func:`AuthMiddlewareStack` to get both. The session (when it was not
    read yet) and the user are read in one call on the sync pool; a
    connection without a session key is anonymous at no cost.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the inner application with ``scope["user"]`` set.

        Raises:
            ValueError: ``scope["session"]`` is missing.
        """
        if scope["type"] not in ("http", "websocket"):
            await self.inner(scope, receive, send)
            return
        session = _session(scope, "AuthMiddleware")
        user: User
        if session.session_key is None:
            user = AnonymousUser()
        else:
            user = await run_sync(
                call_with_fresh_connections, _connect_user, scope, session
            )
        await self.inner({**scope, "user": user}, receive, send)


def AuthMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Wrap ``inner`` in cookie, session and auth middleware, outermost first.

    The name is Channels', and reads like a class on purpose.
    """
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner), load=False))


def _backend_path(user: AbstractBaseUser, backend: str | None) -> str:
    """Return the backend to record, by Django's rules for ``login()``."""
    backend = backend or getattr(user, "backend", None)
    if backend is None:
        backends = settings.AUTHENTICATION_BACKENDS
        if len(backends) != 1:
            raise ValueError(
                "login() needs to know which authentication backend the user "
                f"came from, and {len(backends)} are configured: pass "
                "backend='dotted.path', or use a user returned by authenticate()."
            )
        backend = backends[0]
    if not isinstance(backend, str):
        raise TypeError(
            "login() expected backend as a dotted path string, got "
            f"{type(backend).__name__}."
        )
    return backend


async def login(
    scope: Scope,
    user: AbstractBaseUser | None = None,
    backend: str | None = None,
    *,
    rotate: bool = True,
) -> dict[str, str] | None:
    """Log ``user`` in on this connection's session, and save the session.

    Does what Django's ``alogin()`` does, session fixation defence included:
    a session that belongs to another user (or an older password) is
    flushed, an anonymous one gets a new key (its data stays), and the old
    key's session is deleted. Sets ``scope["user"]`` and sends
    ``user_logged_in`` (which updates ``last_login``). The CSRF token is not
    rotated: it lives in a cookie.

    The client gets the new session cookie with the handshake answer when
    this runs before ``accept()`` on a server that sends ``websocket.accept``
    headers (uvicorn does, daphne does not). Otherwise it gets a *session
    frame*, ``{"kind": "session", "token": ..., "url": ...}``, whose
    single-use token the page exchanges for the cookie at
    :func:`~django_realtime.middleware.handoff.take_session_cookie`
    (``realtime.js`` does so by itself). A
    :class:`~django_realtime.streams.StreamConsumer` sends the frame itself
    (see :func:`~django_realtime.sessions.send_session_frames`); other
    consumers get it back and send it to their client.

    Args:
        scope: The connection's scope, with ``scope["session"]``.
        user: The user to log in, for example from ``authenticate()``;
            ``None`` (as in Channels) logs in ``scope["user"]``.
        backend: The dotted path of the user's authentication backend;
            defaults to ``user.backend`` (set by ``authenticate()``), or to
            the only entry of ``AUTHENTICATION_BACKENDS``.
        rotate: ``False`` keeps the session key the client's cookie holds
            (another user's data is still cleared). That gives up the
            fixation defence: anyone who planted or learnt the cookie before
            the login is logged in with the user.

    Returns:
        The session frame the consumer must send to its client as JSON
        text, or ``None`` when there is none to send.

    Raises:
        ValueError: ``scope["session"]`` is missing, there is no user to log
            in, or the backend cannot be told.
        ImproperlyConfigured: The cookie must be handed over with a session
            frame and the exchange view is not routed (checked before the
            session is changed).
        SessionInterrupted: the session was deleted meanwhile (for example
            by a logout in another request).
    """
    session = _session(scope, "login")
    if user is None:
        user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        raise ValueError(
            "login() expected a user to log in, as its argument or in "
            f"scope['user'], got {type(user).__name__}: pass the user (from "
            "authenticate(), say), or wrap the application in AuthMiddlewareStack."
        )
    handed_over = rotate and not cookie_settable(scope)
    if handed_over:
        handoff_url(scope)  # Fail before changing anything.
    user_id = user._meta.pk.value_to_string(user)
    auth_hash = user.get_session_auth_hash()
    previous_key = session.session_key
    if await session.ahas_key(SESSION_KEY):
        if await session.aget(SESSION_KEY) != user_id or not constant_time_compare(
            await session.aget(HASH_SESSION_KEY, ""), auth_hash
        ):
            # Never hand one user's session data to another.
            if rotate:
                await session.aflush()
            else:
                session.clear()
    elif rotate:
        await session.acycle_key()
    await session.aset(SESSION_KEY, user_id)
    await session.aset(BACKEND_SESSION_KEY, _backend_path(user, backend))
    await session.aset(HASH_SESSION_KEY, auth_hash)
    try:
        await session.asave()
    except UpdateError:
        raise SessionInterrupted(
            "login() could not save the session: it was deleted meanwhile; the "
            "user may have logged out in another request."
        ) from None
    frame = None
    if session.session_key != previous_key:
        if handed_over:
            frame = await hand_over_session(scope, session, previous_key)
        elif not rotate and handshake_answered(scope):
            logger.warning(
                "login(rotate=False) created a new session after the handshake "
                "was answered; the client has no cookie for it, so HTTP requests "
                "will not see this login. Log in with rotate=True."
            )
    scope["user"] = user
    request = _ConnectionRequest(scope, session)
    await user_logged_in.asend(sender=user.__class__, request=request, user=user)
    return frame


async def logout(scope: Scope) -> None:
    """Log the connection's user out, as Django's ``alogout()`` does.

    Sends ``user_logged_out``, flushes the session (its data is deleted from
    the session store, so the client's cookie is logged out for HTTP
    requests too) and sets ``scope["user"]`` to ``AnonymousUser``.

    Raises:
        ValueError: ``scope["session"]`` is missing.
    """
    request = _ConnectionRequest(scope, _session(scope, "logout"))
    await alogout(cast(HttpRequest, request))
    scope["user"] = AnonymousUser()
