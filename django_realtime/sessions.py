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
HTTP response starts. If the session was modified by then, or has a new
key, it is saved and a ``Set-Cookie`` header is added to that message; if
the client's cookie names a session that is empty, the cookie is deleted.
After that, a WebSocket cannot set cookies, so a handler that changes the
session saves it itself (``await scope["session"].asave()``) under the key
the client already holds; a handler that gives the session a new key hands
its cookie over with a session frame (:func:`hand_over_session`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.http.cookie import parse_cookie

from django_realtime.delivery.db import call_with_fresh_connections
from django_realtime.delivery.sync import run_sync
from django_realtime.middleware.handoff import (
    handoff_url,
    issue_token,
    session_frame,
    set_session_cookie,
)
from django_realtime.servers.daphne import gate_connection
from django_realtime.types import ASGIApp, Message, Send

__all__ = [
    "CookieMiddleware",
    "SessionMiddleware",
    "SessionMiddlewareStack",
    "cookie_settable",
    "hand_over_session",
    "send_session_frames",
]

logger = logging.getLogger(__name__)


# Where SessionMiddleware keeps what it must know about the client's cookie:
# see _CookieState. auth.login() reads it too.
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
    """What SessionMiddleware knows about the client's session cookie.

    ``client_key`` is the key the handshake's cookie held; ``client_keys``
    the keys the client may hold now (``""`` for no cookie): the handshake's,
    and those handed over since by session frames the client may not have
    exchanged yet. ``headers`` says whether the answer to the handshake can
    carry a ``Set-Cookie``; ``frames`` whether the middleware sends session
    frames itself (:func:`send_session_frames`), through ``send``;
    ``pending`` holds those due right after the accept.
    """

    __slots__ = (
        "answered",
        "client_key",
        "client_keys",
        "frames",
        "headers",
        "pending",
        "send",
    )

    def __init__(self, client_key: str | None, headers: bool, send: Send) -> None:
        self.client_key = client_key
        self.client_keys = {client_key or ""}
        self.answered = False
        self.headers = headers
        self.frames = False
        self.pending: list[dict[str, str]] = []
        self.send = send

    async def deliver(self, frame: dict[str, str]) -> None:
        """Send ``frame`` to the client as JSON text, now or after the accept."""
        if not self.answered:
            self.pending.append(frame)
            return
        try:
            await self.send({"type": "websocket.send", "text": json.dumps(frame)})
        except (OSError, RuntimeError) as exc:
            # The connection has gone: its next handshake brings the cookie
            # it has, and the session middleware deals with that.
            logger.debug("Could not send a session frame: %r", exc)


def _state(scope: MutableMapping[str, Any]) -> _CookieState | None:
    state = scope.get(STATE_KEY)
    return state if isinstance(state, _CookieState) else None


def _accept_carries_headers(scope: MutableMapping[str, Any]) -> bool:
    """Return whether the server sends the headers of ``websocket.accept``.

    They are in the ASGI WebSocket spec from version 2.1; daphne declares no
    version (2.0) and drops them.
    """
    if scope["type"] != "websocket":
        return True
    version = str(scope.get("asgi", {}).get("spec_version") or "2.0")
    try:
        return tuple(int(part) for part in version.split(".")[:2]) >= (2, 1)
    except ValueError:
        return False


def handshake_answered(scope: MutableMapping[str, Any]) -> bool:
    """Return whether the connection's cookies can no longer be changed.

    ``True`` once the handshake was accepted or refused (or the HTTP response
    started), and for a scope that did not come through
    :class:`SessionMiddleware`.
    """
    state = _state(scope)
    return state is None or state.answered


def cookie_settable(scope: MutableMapping[str, Any]) -> bool:
    """Return whether a new session cookie can still go with the handshake answer.

    ``False`` once the handshake was answered, on a server that drops the
    headers of ``websocket.accept`` (daphne), and for a scope that did not
    come through :class:`SessionMiddleware`: the cookie must then be handed
    over with a session frame (:func:`hand_over_session`).
    """
    state = _state(scope)
    return state is not None and not state.answered and state.headers


def send_session_frames(scope: MutableMapping[str, Any]) -> None:
    """Have the session middleware send this connection's session frames.

    Call it before the handshake is answered, from a consumer whose client
    handles JSON frames ``{"kind": "session", ...}`` (``realtime.js`` does;
    :class:`~django_realtime.streams.StreamConsumer` calls this). Frames are
    then sent as they are made, not held with the handler's other sends,
    and those made before the accept right after it; without it,
    :func:`hand_over_session` (and so :func:`~django_realtime.auth.login`)
    returns each frame for the consumer to send. Does nothing for a scope
    that did not come through :class:`SessionMiddleware`.
    """
    state = _state(scope)
    if state is not None:
        state.frames = True


async def hand_over_session(
    scope: MutableMapping[str, Any],
    session: SessionBase,
    previous_key: str | None = None,
) -> dict[str, str] | None:
    """Make the session frame that gives the client the cookie of ``session``.

    For a session that was saved under a new key after the handshake was
    answered (or on a server that drops ``websocket.accept`` headers). Issues
    a single-use token, valid for
    :data:`~django_realtime.middleware.handoff.TOKEN_MAX_AGE` seconds, that
    the client exchanges for the cookie at
    :func:`~django_realtime.middleware.handoff.take_session_cookie`, while
    it holds the cookie it connected with, ``previous_key``, or one handed
    over before on this connection.

    Returns:
        The frame, ``{"kind": "session", "token": ..., "url": ...}``, for
        the consumer to send its client as JSON; ``None`` when the
        middleware sends it (:func:`send_session_frames`).

    Raises:
        ImproperlyConfigured: The exchange view is not routed.
        ValueError: ``session`` has no key (it was never saved).
    """
    if session.session_key is None:
        raise ValueError(
            "hand_over_session() expected a saved session, got one without a "
            "key: await session.asave() first."
        )
    url = handoff_url(scope)
    state = _state(scope)
    cookies = {previous_key or ""}
    if state is not None:
        cookies |= state.client_keys
    token = await issue_token(session.session_key, cookies)
    frame = session_frame(token, url)
    if state is None:
        return frame
    state.client_keys.add(session.session_key)
    if not state.frames:
        return frame
    await state.deliver(frame)
    return None


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
        if scope["type"] == "websocket":  # Outermost on daphne: flow control.
            scope, send = gate_connection(scope, send)
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
        state = _CookieState(client_key, _accept_carries_headers(scope), send)
        inner_scope = {**scope, "session": session, STATE_KEY: state}

        async def send_with_cookie(message: Message) -> None:
            kind = message.get("type")
            if kind not in _ANSWERS or state.answered:
                await send(message)
                return
            if kind in _CAN_CARRY_HEADERS and message.get("status", 200) < 500:
                header = await _session_cookie(session, state.client_key)
                if header is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((b"set-cookie", header))
                    message = {**message, "headers": headers}
                    if state.headers:
                        state.client_keys = {session.session_key or ""}
                    else:
                        await _frame_for_new_key(inner_scope, session, state)
            state.answered = True
            await send(message)
            if kind == "websocket.accept":
                pending, state.pending = state.pending, []
                for frame in pending:
                    await state.deliver(frame)

        await self.inner(inner_scope, receive, send_with_cookie)


async def _frame_for_new_key(
    scope: MutableMapping[str, Any], session: SessionBase, state: _CookieState
) -> None:
    """Queue a session frame if the accept's ``Set-Cookie`` will not arrive.

    Only where the middleware sends session frames, for a session that was
    saved under a key the client was not handed (Django's ``get_user()``
    rotates it when it upgrades a session signed under a fallback secret).
    """
    key = session.session_key
    if not state.frames or key is None or key in state.client_keys:
        return
    try:
        await hand_over_session(scope, session, state.client_key)
    except ImproperlyConfigured as exc:
        logger.warning(
            "The session got a new key before the handshake was answered, on a "
            "server that drops the headers of websocket.accept, and its cookie "
            "cannot be handed over: %s",
            exc,
        )


async def _session_cookie(session: SessionBase, client_key: str | None) -> bytes | None:
    """Save ``session`` if Django would, and return its ``Set-Cookie`` value.

    Follows Django's ``SessionMiddleware.process_response``: an empty session
    deletes the client's cookie, a modified one (or any, with
    ``SESSION_SAVE_EVERY_REQUEST``) is saved and its cookie refreshed. A
    session whose key is not the client's (a new or rotated one) gets its
    cookie too.
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
    elif (
        session.modified
        or settings.SESSION_SAVE_EVERY_REQUEST
        or session.session_key != client_key
    ):
        try:
            await session.asave()
        except UpdateError:
            raise SessionInterrupted(
                "The connection's session was deleted before the handshake was "
                "answered; the user may have logged out in another request."
            ) from None
        await set_session_cookie(response, session)
    else:
        return None
    logger.debug("Setting the session cookie in the handshake answer.")
    return response.cookies[name].OutputString().encode("latin-1")


def SessionMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Wrap ``inner`` in :class:`CookieMiddleware` and :class:`SessionMiddleware`.

    The name is Channels', and reads like a class on purpose.
    """
    return CookieMiddleware(SessionMiddleware(inner))
