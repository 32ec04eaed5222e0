"""What a stream session asks its transport to do.

Each is a plain record; the transport does the I/O and, for the actions
that have a result, hands it back to the session:

========================  ==================================================
action                    the transport
========================  ==================================================
:class:`Send`             sends ``frames`` (JSON text) to the client, in order
:class:`Authorize`        asks the application; then ``session.authorized()``
:class:`Call`             runs the request handler; then ``session.replied()``
                          (or ``refused()``, ``failed()``, ``unknown_request()``)
:class:`Listen`           ``store.listen(stream)``; then ``session.listened()``
:class:`Unlisten`         ``store.unlisten(stream)``
:class:`Read`             ``store.read(stream, since)``; then
                          ``session.history_read()``
:class:`Deliver`          ``delivery.render(parts)``; sends the frames it
                          returns, in order (filtered subscriptions)
:class:`Wait`             nothing until ``until`` or new input
:class:`Close`            closes the connection with ``code``
========================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_realtime.streams.filters import FilteredDelivery
from django_realtime.streams.positions import Position, Publication

__all__ = [
    "Action",
    "Authorize",
    "Call",
    "Close",
    "Deliver",
    "Listen",
    "Read",
    "Send",
    "Unlisten",
    "Wait",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frames``, JSON text each, to the client in order."""

    frames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Authorize:
    """Ask the application whether the connection may read ``stream``."""

    id: int
    stream: str
    since: Position | None


@dataclass(frozen=True, slots=True)
class Call:
    """Run the request handler named ``handler`` with ``data``."""

    id: int
    type: str
    handler: str
    data: Any


@dataclass(frozen=True, slots=True)
class Listen:
    """Have the store announce ``stream``'s publications to this connection."""

    stream: str


@dataclass(frozen=True, slots=True)
class Unlisten:
    """Stop the store's announcements of ``stream`` to this connection."""

    stream: str


@dataclass(frozen=True, slots=True)
class Read:
    """Read ``stream``'s history after ``since`` (``None``: only its position)."""

    stream: str
    since: Position | None


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send a filtered subscription's ``parts``, through its filter.

    ``parts`` are frames (JSON text), sent as they are, and publications,
    which :meth:`~.filters.FilteredDelivery.render` turns into this
    subscriber's frames.
    """

    delivery: FilteredDelivery
    parts: tuple[str | Publication, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    """Do nothing until ``until`` (the session's clock) or new input."""

    until: float


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with ``code``; the session does nothing more."""

    code: int


#: What :meth:`~django_realtime.streams.session.StreamSession.next_action` returns.
Action = Send | Deliver | Listen | Unlisten | Read | Wait | Close
