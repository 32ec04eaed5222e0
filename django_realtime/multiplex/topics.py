"""Which consumer serves a topic: the topic routes of a multiplexer, pure.

Topic patterns are written as Django's ``path()`` routes: ``"online"``
matches that topic only; ``"chat/<room>"`` and ``"job/<int:pk>"`` capture
values, converted by the converter, which go to the child's
``scope["url_route"]["kwargs"]``. A pattern matches the whole topic name.
Patterns are tried in the order given; the first match wins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.urls.resolvers import RoutePattern

from django_realtime.types import ASGIApp

__all__ = ["TopicMatch", "TopicRoutes"]


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """A topic's route: the application to run and the values it captured."""

    app: ASGIApp
    kwargs: dict[str, Any]
    pattern: str


class TopicRoutes:
    """Map topic names to ASGI applications by ``path()``-style patterns.

    Args:
        routes: Pattern -> application (``Consumer.as_asgi()``), in the
            order they are tried.

    Raises:
        ImproperlyConfigured: a pattern is not a string or an application is
            not callable.
    """

    __slots__ = ("_exact", "_patterns")

    def __init__(self, routes: Mapping[str, ASGIApp]) -> None:
        self._exact: dict[str, TopicMatch] = {}
        self._patterns: list[tuple[RoutePattern, TopicMatch]] = []
        for pattern, app in routes.items():
            if not isinstance(pattern, str) or not pattern:
                raise ImproperlyConfigured(
                    f"Expected topic patterns as non-empty strings, got {pattern!r}."
                )
            if not callable(app):
                raise ImproperlyConfigured(
                    f"Expected an ASGI application for topic {pattern!r} "
                    f"(Consumer.as_asgi()), got {app!r}."
                )
            route = TopicMatch(app, {}, pattern)
            if "<" not in pattern and not self._patterns:
                # Only ahead of every pattern: first match wins, in order.
                self._exact.setdefault(pattern, route)
            else:
                self._patterns.append((RoutePattern(pattern, is_endpoint=True), route))

    def match(self, topic: str) -> TopicMatch | None:
        """Return the route of ``topic``, or ``None`` when no pattern matches it."""
        exact = self._exact.get(topic)
        if exact is not None:
            return exact
        for pattern, route in self._patterns:
            found = pattern.match(topic)
            if found is not None:
                return TopicMatch(route.app, dict(found[2]), route.pattern)
        return None

    def __iter__(self) -> Iterator[TopicMatch]:
        """Yield every route (with no captured values), in the order tried."""
        yield from self._exact.values()
        for _, route in self._patterns:
            yield route

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)
