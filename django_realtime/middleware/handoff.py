"""Hand a new session cookie to a browser whose WebSocket cannot set it.

A WebSocket can set cookies only in the answer to its handshake, and some
servers (daphne) send no headers with ``websocket.accept`` at all. When the
connection's session gets a new key where no ``Set-Cookie`` can reach the
browser (:func:`django_realtime.auth.login` rotates it, as Django's login
does against session fixation), the new cookie is handed over in three
steps:

1. :func:`issue_token` stores a *token* in the session store
   (``SESSION_ENGINE``), so every process of the site can read it: a record
   that names the new session key and the session cookies the browser may
   hold, expires after :data:`TOKEN_MAX_AGE` seconds and is deleted by its
   first use.
2. The client gets a *session frame*, a JSON text frame made by
   :func:`session_frame`::

       {"kind": "session", "token": "<token>", "url": "/realtime/session/"}

3. The page sends ``POST <url>`` with the token in the
   ``X-Realtime-Session-Token`` header; :func:`take_session_cookie`
   answers ``204`` with the new session's cookie, set as Django's
   ``SessionMiddleware`` sets it (``SESSION_COOKIE_*`` settings). The
   browser's ``realtime.js`` does this itself (``takeSessionCookie()``).

The view must be routed under the name :data:`URL_NAME`::

    from django.urls import path

    from django_realtime.middleware.handoff import take_session_cookie

    urlpatterns = [
        path("realtime/session/", take_session_cookie, name="realtime-session"),
    ]

The exchange resists cross-site requests without Django's CSRF token: the
token travels in a custom header (a cross-site form cannot send one, and a
cross-origin ``fetch`` with one needs a CORS preflight that the view does
not grant), a request with an ``Origin`` must come from the site itself or
``CSRF_TRUSTED_ORIGINS``, and the browser must present one of the session
cookies the token was issued for, so a token taken from another browser's
socket cannot log this one in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.http import http_date, is_same_domain
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_realtime.ops.logs import printable

__all__ = [
    "FRAME_KIND",
    "TOKEN_HEADER",
    "TOKEN_MAX_AGE",
    "URL_NAME",
    "TokenRefused",
    "check_token",
    "handoff_url",
    "issue_token",
    "session_frame",
    "set_session_cookie",
    "take_session_cookie",
]

logger = logging.getLogger(__name__)

#: The name :func:`take_session_cookie` must be routed under.
URL_NAME = "realtime-session"
#: The ``kind`` of a session frame.
FRAME_KIND = "session"
#: The request header that carries the token.
TOKEN_HEADER = "X-Realtime-Session-Token"
#: Seconds a token stays valid.
TOKEN_MAX_AGE = 60

# The session-store key of a token's record.
_RECORD = "django_realtime.session_handoff"
# Longer tokens are refused unread (a signed-cookies token is a few hundred
# characters; a server-side session key, 32).
_MAX_TOKEN_LENGTH = 4096


class TokenRefused(Exception):
    """A token that does not hand a session over, and why (for the client)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _store() -> type[SessionBase]:
    store: type[SessionBase] = import_module(settings.SESSION_ENGINE).SessionStore
    return store


def handoff_url(scope: Mapping[str, Any] | None = None) -> str:
    """Return the URL path of :func:`take_session_cookie`, for a session frame.

    The path is prefixed like the site's other URLs: with
    ``FORCE_SCRIPT_NAME``, or else the connection's ``root_path``.

    Raises:
        ImproperlyConfigured: No URL pattern is named :data:`URL_NAME`.
    """
    try:
        path = reverse(URL_NAME)
    except NoReverseMatch:
        raise ImproperlyConfigured(
            f"Expected a URL pattern named {URL_NAME!r} for the session cookie "
            "exchange, and ROOT_URLCONF has none. Add path('realtime/session/', "
            "take_session_cookie, name='realtime-session') to your urlpatterns "
            "(from django_realtime.middleware.handoff import take_session_cookie), "
            "or log in with rotate=False."
        ) from None
    prefix = settings.FORCE_SCRIPT_NAME or (scope or {}).get("root_path") or ""
    return str(prefix).rstrip("/") + "/" + path.removeprefix(get_script_prefix())


def session_frame(token: str, url: str) -> dict[str, str]:
    """Return the session frame that hands ``token`` to the client."""
    return {"kind": FRAME_KIND, "token": token, "url": url}


async def issue_token(
    session_key: str, cookies: Iterable[str | None], *, now: float | None = None
) -> str:
    """Store a token that hands ``session_key`` over, and return it.

    Args:
        session_key: The key of the session the browser should take.
        cookies: The session cookies the browser may present with the token;
            ``None`` or ``""`` for no cookie.
        now: The current time (``time.time()``).
    """
    issued = time.time() if now is None else now
    record = _store()()
    await record.aset(
        _RECORD,
        {
            "session_key": session_key,
            "cookies": sorted({cookie or "" for cookie in cookies}),
            "expires": issued + TOKEN_MAX_AGE,
        },
    )
    await record.aset_expiry(TOKEN_MAX_AGE)
    await record.asave()
    if record.session_key is None:
        raise RuntimeError(
            f"Expected {settings.SESSION_ENGINE}.SessionStore.asave() to give the "
            "token a key, got None."
        )
    return record.session_key


def check_token(record: object, cookie: str, now: float) -> str:
    """Return the session key a token's ``record`` hands to a browser.

    Args:
        record: What the token's entry in the session store holds (``None``
            for an unknown, used or expired token).
        cookie: The session cookie the request carries, ``""`` for none.
        now: The current time (``time.time()``).

    Raises:
        TokenRefused: The token is unknown, used, expired or malformed
            (``invalid_token``), or was issued to a browser holding another
            session cookie (``wrong_session``).
    """
    if not (
        isinstance(record, dict)
        and isinstance(record.get("session_key"), str)
        and isinstance(record.get("cookies"), list)
        and isinstance(record.get("expires"), int | float)
    ):
        raise TokenRefused(
            "invalid_token",
            "Expected a session token the server issued, got an "
            "unknown, used or expired one.",
        )
    if now >= record["expires"]:
        raise TokenRefused(
            "invalid_token",
            f"The session token expired {now - record['expires']:.0f} s ago; "
            f"tokens are valid for {TOKEN_MAX_AGE} s.",
        )
    if cookie not in record["cookies"] and cookie != record["session_key"]:
        raise TokenRefused(
            "wrong_session",
            "Expected the session cookie of the connection the token was issued "
            "to, got another one.",
        )
    return str(record["session_key"])


async def set_session_cookie(response: HttpResponseBase, session: SessionBase) -> None:
    """Set the cookie of ``session`` on ``response``, as Django's middleware does.

    Honours ``SESSION_COOKIE_NAME``, ``_AGE`` (through the session's
    expiry), ``_DOMAIN``, ``_PATH``, ``_SECURE``, ``_HTTPONLY``,
    ``_SAMESITE`` and ``SESSION_EXPIRE_AT_BROWSER_CLOSE``.
    """
    max_age: int | None = None
    expires: str | None = None
    if not await session.aget_expire_at_browser_close():
        max_age = await session.aget_expiry_age()
        expires = http_date(time.time() + max_age)
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session.session_key or "",
        max_age=max_age,
        expires=expires,
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=bool(settings.SESSION_COOKIE_SECURE),
        httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
        samesite=settings.SESSION_COOKIE_SAMESITE,
    )


def _origin_allowed(request: HttpRequest) -> bool:
    """Return whether the request's ``Origin`` (if any) passes Django's CSRF rule.

    It must be the site's own origin, one of ``CSRF_TRUSTED_ORIGINS``, or
    match one written with a wildcard (``"https://*.example.com"``).
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == f"{request.scheme}://{request.get_host()}":
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if origin == trusted and "*" not in trusted:
            return True
        if "*" in trusted:
            pattern = urlsplit(trusted)
            if pattern.scheme == parts.scheme and is_same_domain(
                parts.netloc, pattern.netloc.lstrip("*")
            ):
                return True
    return False


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"code": code, "message": message}, status=status)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt  # Checked below without Django's token, which the page may lack.
@require_POST
async def take_session_cookie(request: HttpRequest) -> HttpResponseBase:
    """Exchange a session token for the cookie of the session it names.

    Answers ``204`` with ``Set-Cookie``. A token is used up by the first
    request that presents it, accepted or refused. Refuses, with
    a JSON body ``{"code": ..., "message": ...}``: ``400 missing_token``
    (no :data:`TOKEN_HEADER`), ``403 cross_origin`` (an ``Origin`` other
    than the site's or ``CSRF_TRUSTED_ORIGINS``), ``403 invalid_token``,
    ``403 wrong_session`` (see :func:`check_token`) and ``403 session_gone``
    (the session was deleted since, by a logout say). Other methods than
    POST get ``405``.
    """
    token = request.headers.get(TOKEN_HEADER, "")
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        return _refuse(
            400,
            "missing_token",
            f"Expected a session token of at most {_MAX_TOKEN_LENGTH} characters "
            f"in the {TOKEN_HEADER} header, got "
            f"{'none' if not token else f'{len(token)} characters'}.",
        )
    if not _origin_allowed(request):
        logger.debug(
            "Refused a session token sent from %s.",
            printable(request.headers.get("Origin")),
        )
        return _refuse(
            403, "cross_origin", "Expected a request from this site's own pages."
        )
    entry = _store()(token)
    record = await entry.aget(_RECORD)
    if record is not None:
        await entry.adelete()
    cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    try:
        session_key = check_token(record, cookie, time.time())
    except TokenRefused as refused:
        logger.debug("Refused a session token: %s", refused.code)
        return _refuse(403, refused.code, refused.message)
    session = _store()(session_key)
    await session.akeys()  # Loads it; an unknown or expired key becomes None.
    if session.session_key is None:
        return _refuse(
            403,
            "session_gone",
            "The session this token hands over has ended meanwhile (a logout?).",
        )
    response = HttpResponse(status=204)
    response["Cache-Control"] = "no-store"
    await set_session_cookie(response, session)
    # Django's SessionMiddleware, if installed, then sees this session, not
    # the rotated one the request's cookie names.
    request.session = session
    return response
