"""Correlation ids: one id per inbound message, carried through the layer.

Every message a consumer handles runs with a correlation id in a context
variable, so that its log lines, and the channel layer messages it sends,
say which inbound message they came from:

- a WebSocket connection has an id, ``scope["correlation_id"]``: the
  handshake's ``X-Request-ID`` (or ``X-Correlation-ID``) header when a proxy
  or load balancer set one that is safe to log, otherwise a new random id;
- each frame from the client is ``<connection id>.<n>``, its number on the
  connection (1, 2, ...); the handshake and the disconnect carry the
  connection's id;
- a layer message sent from a handler (``self.channel_layer.send()`` and
  ``group_send()``, :func:`~django_realtime.delivery.send_to_group` and its
  siblings) carries the sender's id in its ``"correlation_id"`` key, unless
  it already has one; its receivers handle it with that id;
- Django views get one per request from :class:`CorrelationIdMiddleware`.

:func:`get_correlation_id` returns the current id (handlers also have
``self.correlation_id``); :class:`CorrelationIdFilter` puts it on every log
record as ``%(correlation_id)s``.

An id is built only when something asks for it: the context variable holds
either an id or a :data:`Source`, a function that returns the id of the
message handled in the current context (a consumer installs one per
connection, :func:`set_source`), so that a message nobody logs or stamps
costs no string.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from typing import Any, TypeAlias

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

__all__ = [
    "CorrelationIdFilter",
    "CorrelationIdMiddleware",
    "WeakSource",
    "correlation_id",
    "current_source",
    "get_correlation_id",
    "id_from_headers",
    "new_correlation_id",
    "reset_source",
    "set_source",
    "stamp",
]

#: The key of a layer message that carries its correlation id.
KEY = "correlation_id"

#: A function that returns the id of the message handled in the current
#: context, or ``None``; it runs in the context of whoever asks.
Source: TypeAlias = Callable[[], "str | None"]

_current: ContextVar[str | Source | None] = ContextVar(
    "django_realtime_correlation_id", default=None
)
_current_get = _current.get

#: ``current_source()``: return what gives the ids in this context (an id, a
#: :data:`Source` or ``None``; see :func:`set_source`). The context
#: variable's own method: a consumer asks for every message.
current_source: Callable[[], str | Source | None] = _current.get

# An id from a client's header is logged as it is: only short, plain ones.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HEADERS = (b"x-request-id", b"x-correlation-id")


def new_correlation_id() -> str:
    """Return a new random id (16 hex digits)."""
    return secrets.token_hex(8)


def get_correlation_id() -> str | None:
    """Return the correlation id of the message being handled, or ``None``."""
    value = _current_get(None)
    if value is None or type(value) is str:
        return value
    return value()  # type: ignore[operator]


def set_source(source: str | Source | None) -> Token[str | Source | None]:
    """Make ``source`` give the ids in this context; return a token to reset it.

    ``source`` is an id, or a :data:`Source` called whenever an id is asked
    for until :func:`reset_source`, in this context and in the tasks and
    threads that copy it.
    """
    return _current.set(source)


def reset_source(token: Token[str | Source | None]) -> None:
    """Restore what gave the ids before :func:`set_source` returned ``token``."""
    _current.reset(token)


class WeakSource:
    """A :data:`Source` that calls a bound method without keeping its object.

    A context outlives the connection it was set for wherever a copy of it
    is kept (a server's timer scheduled from a send keeps one until it is
    due), so a source must not keep a consumer alive: once the object is
    gone the source gives ``None``.

    Args:
        method: A bound method returning the id, or ``None``.
    """

    __slots__ = ("_method",)

    def __init__(self, method: Callable[[], str | None]) -> None:
        self._method = weakref.WeakMethod(method)

    def __call__(self) -> str | None:
        method = self._method()
        return None if method is None else method()


@contextlib.contextmanager
def correlation_id(value: str | None = None) -> Iterator[str]:
    """Run the ``with`` block under ``value`` (default: a new id); yield the id.

    For code outside consumers and views that starts work of its own, such
    as a management command or a scheduled job::

        with correlation_id() as cid:
            send_to_group("news", {"type": "news.item", "id": item.pk})
    """
    value = value or new_correlation_id()
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)


def id_from_headers(headers: Any) -> str | None:
    """Return the request id in ASGI ``headers`` if it is safe to log, else ``None``."""
    for name, value in headers:
        if name.lower() in _HEADERS:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _SAFE_ID.fullmatch(text) else None
    return None


def stamp(message: dict[str, Any]) -> dict[str, Any]:
    """Return ``message`` with the current correlation id, if it lacks one.

    The caller's dict is not changed: a stamped message is a shallow copy.
    """
    if KEY in message:
        return message
    current = get_correlation_id()
    if current is None:
        return message
    return {**message, KEY: current}


class CorrelationIdFilter(logging.Filter):
    """Add ``correlation_id`` to every record (``"-"`` outside any message).

    In ``LOGGING``::

        "filters": {
            "correlation": {
                "()": "django_realtime.middleware.correlation.CorrelationIdFilter"
            }
        },
        "formatters": {
            "plain": {"format": "%(levelname)s [%(correlation_id)s] %(message)s"}
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["correlation"],
                "formatter": "plain",
            }
        },
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``record.correlation_id``; keep every record."""
        if not hasattr(record, KEY):
            record.correlation_id = get_correlation_id() or "-"
        return True


class CorrelationIdMiddleware:
    """Give each Django request a correlation id (Django middleware, sync and async).

    The id is the request's ``X-Request-ID`` (or ``X-Correlation-ID``) when
    safe to log, else a new one; it is ``request.correlation_id`` and goes
    back in the response's ``X-Request-ID`` header. Sends the view makes
    through django_realtime carry it to the consumers that handle them.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        """Handle ``request`` under its correlation id."""
        if self.is_async:
            return self.__acall__(request)
        with correlation_id(self._id_of(request)) as value:
            request.correlation_id = value
            response = self.get_response(request)
        response["X-Request-ID"] = value
        return response

    async def __acall__(self, request: Any) -> Any:
        """Handle ``request`` under its correlation id (async stack)."""
        with correlation_id(self._id_of(request)) as value:
            request.correlation_id = value
            response = await self.get_response(request)
        response["X-Request-ID"] = value
        return response

    @staticmethod
    def _id_of(request: Any) -> str | None:
        for header in ("X-Request-ID", "X-Correlation-ID"):
            value = request.headers.get(header)
            if value is not None:
                return value if _SAFE_ID.fullmatch(value) else None
        return None
