"""Route connections to applications by protocol, URL path or channel name.

A project's ``asgi.py`` typically reads::

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(chat.routing.websocket_urlpatterns)),
    })

:class:`URLRouter` takes Django's own ``path()`` and ``re_path()`` patterns,
including converters; captured values and the patterns' extra ``kwargs``
land in ``scope["url_route"]``. A pattern may route to another
:class:`URLRouter`, which matches what is left of the path; a path it does
not match goes on to the outer router's next route. A path no route matches
is refused: a WebSocket handshake is closed (the client sees HTTP 403) and
an HTTP request gets a 404, each with one log line at WARNING and no
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils.module_loading import import_string

from django_realtime.exceptions import RouteNotFound
from django_realtime.ops.logs import printable
from django_realtime.servers.daphne import gate_connection
from django_realtime.types import ASGIApp

__all__ = [
    "ChannelNameRouter",
    "ProtocolTypeRouter",
    "URLRouter",
    "get_default_application",
]

logger = logging.getLogger(__name__)


def get_default_application() -> ASGIApp:
    """Import and return the application named by ``settings.ASGI_APPLICATION``.

    Raises:
        ImproperlyConfigured: the setting is missing or cannot be imported.
    """
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        raise ImproperlyConfigured(
            "ASGI_APPLICATION is not set: point it at your project's ASGI "
            "application, for example ASGI_APPLICATION = 'mysite.asgi.application'."
        )
    try:
        application: ASGIApp = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Cannot import ASGI_APPLICATION {path!r}: {exc}"
        ) from exc
    return application


async def _serve_lifespan(receive: Any, send: Any) -> None:
    """Answer the lifespan protocol for an application that has no use for it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _not_found(send: Any) -> None:
    """Answer an HTTP request with 404."""
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Not Found"})


class ProtocolTypeRouter:
    """Pick an application by ``scope["type"]`` (``http``, ``websocket``, ...).

    A ``lifespan`` scope with no application of its own is answered here, so
    servers that speak it (uvicorn) start without complaint; so is an
    ``http`` scope, with 404 and a warning, as Django answers a URL it does
    not know.

    A WebSocket connection served by daphne gets its flow-control gate here,
    before any middleware wraps ``send``
    (:func:`~django_realtime.servers.daphne.gate_connection`).
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        self.application_mapping = dict(application_mapping)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        try:
            application = self.application_mapping[kind]
        except KeyError:
            if kind == "lifespan":
                await _serve_lifespan(receive, send)
                return
            if kind == "http":
                # A plain request to a WebSocket-only application (a probe,
                # a scanner, a browser opening the URL): a 404, not a 500.
                logger.warning(
                    "Not Found: %s (ProtocolTypeRouter has no 'http' application)",
                    printable(scope.get("path", "?")),
                )
                await _not_found(send)
                return
            raise RouteNotFound(
                f"No application for scope type {kind!r}: ProtocolTypeRouter "
                f"knows {sorted(self.application_mapping)}."
            ) from None
        if kind == "websocket":
            scope, send = gate_connection(scope, send)
        await application(scope, receive, send)


# The application a path leads to, what is left of the path, and the values
# captured at this level: positional, and named with the route's kwargs=.
_Resolved = tuple[ASGIApp, str, tuple[Any, ...], dict[str, Any]]


class _Route:
    """One compiled route: a Django pattern and the application it leads to."""

    __slots__ = ("application", "extra", "pattern", "router")

    def __init__(self, route: URLPattern) -> None:
        self.application: ASGIApp = route.callback
        # kwargs= of path() and re_path(), passed on as Django passes them.
        self.extra: dict[str, Any] = dict(route.default_args)
        self.router = route.callback if isinstance(route.callback, URLRouter) else None
        pattern = route.pattern
        if self.router is not None:
            # path("chat/", URLRouter(...)) builds an endpoint pattern that
            # must match the whole path; a nested router needs a prefix match.
            # Rebuilding the pattern from its public parts keeps converters.
            if isinstance(pattern, RoutePattern):
                pattern = RoutePattern(str(pattern), name=route.name, is_endpoint=False)
            elif isinstance(pattern, RegexPattern):
                pattern = RegexPattern(str(pattern), name=route.name, is_endpoint=False)
        self.pattern = pattern


class URLRouter:
    """Route by path with Django's ``path()`` and ``re_path()`` patterns.

    The first route that matches the path wins, as in ``urls.py``. A route
    to another :class:`URLRouter` matches a prefix of the path; when the
    inner router has no route for the rest, the search goes on with the
    outer router's next route. The application is called with
    ``scope["url_route"]``: the positional values captured on the way
    (``"args"``) and the named ones merged with each route's ``kwargs=``
    (``"kwargs"``; an inner route's values win over an outer one's, and a
    route's ``kwargs=`` over what its own pattern captured, as in Django).
    ``scope["path_remaining"]`` holds what is left of the path (empty once
    an endpoint has matched all of it).

    Args:
        routes: URL patterns whose views are ASGI applications (usually
            ``Consumer.as_asgi()``) or other :class:`URLRouter` instances.

    Raises:
        ImproperlyConfigured: a route is an ``include()``; nest a
            :class:`URLRouter` instead.
    """

    def __init__(self, routes: Sequence[URLPattern | URLResolver]) -> None:
        self.routes = []
        for route in routes:
            if not isinstance(route, URLPattern):
                raise ImproperlyConfigured(
                    f"URLRouter expected path() or re_path() routes, got {route!r}; "
                    "to nest routes, use path('prefix/', URLRouter([...]))."
                )
            self.routes.append(_Route(route))

    def _resolve(self, path: str) -> _Resolved | None:
        """Return where ``path`` leads (leading slashes ignored), or ``None``.

        Returns:
            The application of the first matching route, what is left of
            the path after its pattern, and the positional and named values
            for ``scope["url_route"]`` at this level (named values include
            the route's ``kwargs=``). A route to a nested router matches
            only if the nested router resolves the rest of the path.
        """
        path = path.lstrip("/")
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            remaining, args, kwargs = match
            if route.router is not None and route.router._resolve(remaining) is None:
                continue
            return route.application, remaining, args, {**kwargs, **route.extra}
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path_remaining")
        if path is None:
            path = scope.get("path")
            if path is None:
                raise RouteNotFound(
                    f"URLRouter needs a 'path' in the scope; a {scope['type']!r} "
                    "scope has none. Route it with ChannelNameRouter instead."
                )
            root_path = scope.get("root_path", "")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
        resolved = self._resolve(path)
        if resolved is None:
            await self._refuse(scope, receive, send)
            return
        application, remaining, args, kwargs = resolved
        outer = scope.get("url_route", {"args": (), "kwargs": {}})
        scope = {
            **scope,
            "path_remaining": remaining,
            "url_route": {
                "args": (*outer["args"], *args),
                "kwargs": {**outer["kwargs"], **kwargs},
            },
        }
        await application(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        path = scope.get("path")
        if kind == "websocket":
            logger.warning(
                "Refused WebSocket handshake for %s: no route matches.",
                printable(path),
            )
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
        elif kind == "http":
            logger.warning("Not Found: %s (no route matches).", printable(path))
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"Not Found"})
        else:
            raise RouteNotFound(
                f"No route matches path {printable(repr(path))} for a {kind!r} scope."
            )


class ChannelNameRouter:
    """Route ``channel`` scopes (background workers) by channel name."""

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        self.application_mapping = dict(application_mapping)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            channel = scope["channel"]
        except KeyError:
            raise RouteNotFound(
                "ChannelNameRouter expected a 'channel' scope from runworker, got "
                f"a {scope.get('type')!r} scope without a channel name."
            ) from None
        try:
            application = self.application_mapping[channel]
        except KeyError:
            raise RouteNotFound(
                f"No application for channel {channel!r}: ChannelNameRouter "
                f"knows {sorted(self.application_mapping)}."
            ) from None
        await application(scope, receive, send)
