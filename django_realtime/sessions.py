"""Cookies and Django sessions for ASGI connections.

:class:`CookieMiddleware` parses the handshake's ``Cookie`` header into
``scope["cookies"]``; :class:`SessionMiddleware` loads the Django session
named by the session cookie into ``scope["session"]``. Wrap an application
in both with :func:`SessionMiddlewareStack`, or add the user as well with
:func:`django_realtime.auth.AuthMiddlewareStack`.

The session is loaded once, when the connection arrives, with Django's async
session API, so handlers (async ones included) read it like a dict without
touching the session store again. It is saved the way Django's own
``SessionMiddleware`` saves it, at the one moment a cookie can still reach
the client: when the handshake is answered (``websocket.accept``) or the
HTTP response starts. If the session was modified by then, it is saved and
a ``Set-Cookie`` header is added to that message; if the client's cookie
names a session that is empty, the cookie is deleted. After that, a
WebSocket cannot set cookies, so a handler that changes the session saves it
itself (``await scope["session"].asave()``) under the key the client
already holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.http import HttpResponse
from django.http.cookie import parse_cookie
from django.utils.http import http_date

from django_realtime.delivery.db import call_with_fresh_connections
from django_realtime.delivery.sync import run_sync
from django_realtime.types import ASGIApp, Message

__all__ = ["CookieMiddleware", "SessionMiddleware", "SessionMiddlewareStack"]

logger = logging.getLogger(__name__)


# Where SessionMiddleware keeps what it must know when the handshake is
# answered: the key the client's cookie holds, and whether a cookie can
# still be set. auth.login() reads it too.
STATE_KEY = "django_realtime.session_cookie"

# The messages that answer a handshake or start a response: the last chance
# to send the client a cookie.
_ANSWERS = frozenset(
    {
        "http.response.start",
        "websocket.accept",
        "websocket.close",
        "websocket.http.response.start",
    }
)
_CAN_CARRY_HEADERS = frozenset({"websocket.accept", "http.response.start"})


class _CookieState:
    """What SessionMiddleware knows about the client's session cookie."""

    __slots__ = ("answered", "client_key")

    def __init__(self, client_key: str | None) -> None:
        self.client_key = client_key
        self.answered = False


def handshake_answered(scope: MutableMapping[str, Any]) -> bool:
    """Return whether the connection's cookies can no longer be changed.

    ``True`` once the handshake was accepted or refused (or the HTTP response
    started), and for a scope that did not come through
    :class:`SessionMiddleware`.
    """
    state = scope.get(STATE_KEY)
    return not isinstance(state, _CookieState) or state.answered


class CookieMiddleware:
    """Parse the ``Cookie`` headers into ``scope["cookies"]``, a dict of str.

    Several ``Cookie`` headers are read as one, as HTTP/2 allows. Scopes
    other than ``http`` and ``websocket`` pass through unchanged.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the inner application with ``scope["cookies"]`` set."""
        if scope["type"] not in ("http", "websocket"):
            await self.inner(scope, receive, send)
            return
        values = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"cookie"
        ]
        cookies = parse_cookie("; ".join(values)) if values else {}
        await self.inner({**scope, "cookies": cookies}, receive, send)


class SessionMiddleware:
    """Load the Django session named by the session cookie into the scope.

    ``scope["session"]`` is an instance of ``settings.SESSION_ENGINE``'s
    ``SessionStore``, already loaded; an unknown, expired or tampered key
    gives an empty session without a key, as in Django. Needs
    ``scope["cookies"]`` (:class:`CookieMiddleware`).

    The session is read in one call on the sync pool (Django's async session
    methods hop to a thread per call too, through one thread shared by the
    whole process). A connection without a session cookie costs no call.

    Args:
        inner: The application to run.
        load: ``False`` leaves loading to the inner middleware;
            :func:`~django_realtime.auth.AuthMiddlewareStack` uses it so that
            :class:`~django_realtime.auth.AuthMiddleware` reads the session
            and its user in the same call.
    """

    def __init__(self, inner: ASGIApp, *, load: bool = True) -> None:
        self.inner = inner
        self.load = load

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the inner application with ``scope["session"]`` loaded.

        Raises:
            ValueError: ``scope["cookies"]`` is missing.
        """
        if scope["type"] not in ("http", "websocket") or "session" in scope:
            await self.inner(scope, receive, send)
            return
        cookies = scope.get("cookies")
        if cookies is None:
            raise ValueError(
                "SessionMiddleware expected scope['cookies'], and the scope has "
                "none: wrap it in CookieMiddleware, or use SessionMiddlewareStack "
                "or AuthMiddlewareStack."
            )
        client_key = cookies.get(settings.SESSION_COOKIE_NAME)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        session: SessionBase = store(client_key)
        if client_key is None:
            # Nothing to read: the session starts empty, with no I/O.
            session.keys()
        elif self.load:
            # Loaded into the session's cache: from then on dict-style access
            # costs no I/O, in async and sync handlers alike.
            await run_sync(call_with_fresh_connections, session.keys)
        state = _CookieState(client_key)

        async def send_with_cookie(message: Message) -> None:
            kind = message.get("type")
            if kind in _ANSWERS and not state.answered:
                state.answered = True
                if kind in _CAN_CARRY_HEADERS and message.get("status", 200) < 500:
                    header = await _session_cookie(session, state.client_key)
                    if header is not None:
                        headers = list(message.get("headers", ()))
                        headers.append((b"set-cookie", header))
                        message = {**message, "headers": headers}
            await send(message)

        await self.inner(
            {**scope, "session": session, STATE_KEY: state}, receive, send_with_cookie
        )


async def _session_cookie(session: SessionBase, client_key: str | None) -> bytes | None:
    """Save ``session`` if Django would, and return its ``Set-Cookie`` value.

    Follows Django's ``SessionMiddleware.process_response``: an empty session
    deletes the client's cookie, a modified one (or any, with
    ``SESSION_SAVE_EVERY_REQUEST``) is saved and its cookie refreshed.
    """
    response = HttpResponse()
    name = settings.SESSION_COOKIE_NAME
    if session.is_empty():
        if client_key is None:
            return None
        response.delete_cookie(
            name,
            path=settings.SESSION_COOKIE_PATH,
            domain=settings.SESSION_COOKIE_DOMAIN,
            samesite=settings.SESSION_COOKIE_SAMESITE,
        )
    elif session.modified or settings.SESSION_SAVE_EVERY_REQUEST:
        max_age: int | None = None
        expires: str | None = None
        if not await session.aget_expire_at_browser_close():
            max_age = await session.aget_expiry_age()
            expires = http_date(time.time() + max_age)
        try:
            await session.asave()
        except UpdateError:
            raise SessionInterrupted(
                "The connection's session was deleted before the handshake was "
                "answered; the user may have logged out in another request."
            ) from None
        response.set_cookie(
            name,
            session.session_key or "",
            max_age=max_age,
            expires=expires,
            domain=settings.SESSION_COOKIE_DOMAIN,
            path=settings.SESSION_COOKIE_PATH,
            secure=bool(settings.SESSION_COOKIE_SECURE),
            httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
            samesite=settings.SESSION_COOKIE_SAMESITE,
        )
    else:
        return None
    logger.debug("Setting the session cookie in the handshake answer.")
    return response.cookies[name].OutputString().encode("latin-1")


def SessionMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Wrap ``inner`` in :class:`CookieMiddleware` and :class:`SessionMiddleware`.

    The name is Channels', and reads like a class on purpose.
    """
    return CookieMiddleware(SessionMiddleware(inner))
