"""Exceptions raised by django_realtime.

Every exception the package raises on purpose derives from one root, so
``except RealtimeError`` catches them all::

    RealtimeError
    ├── ConsumerError               a consumer was used wrongly
    │   ├── DenyConnection          raise in connect() to refuse the handshake
    │   ├── StopConsumer            raise in a handler to end the consumer
    │   ├── InvalidMessageError     a message without a usable "type"
    │   ├── InvalidFrameError       a client frame the consumer cannot take
    │   └── RequestError            raise in a stream request handler to answer
    │                               with an error frame
    ├── RoutingError                no route for a scope
    │   └── RouteNotFound
    ├── ChannelLayerError           a channel layer refused an operation
    │   ├── ChannelFull             a channel is at capacity
    │   ├── GroupsExpired           a channel read too late lost its groups
    │   ├── InvalidChannelName      a channel or group name is malformed
    │   └── InvalidChannelLayerError  CHANNEL_LAYERS names a bad backend
    └── LiveServerError             a test server did not start or is not running

Settings problems found at start-up are reported by system checks
(``django_realtime.E001`` and on) rather than raised at run time.

channels-redis raises Channels' own ``channels.exceptions.ChannelFull``. When
Channels is installed, its class is re-based onto ours at import time, so
``except django_realtime.exceptions.ChannelFull`` catches both, and the
Channels class still catches what it always caught.
"""

from __future__ import annotations

__all__ = [
    "ChannelFull",
    "ChannelLayerError",
    "ConsumerError",
    "DenyConnection",
    "GroupsExpired",
    "InvalidChannelLayerError",
    "InvalidChannelName",
    "InvalidFrameError",
    "InvalidMessageError",
    "LiveServerError",
    "RealtimeError",
    "RequestError",
    "RouteNotFound",
    "RoutingError",
    "StopConsumer",
]


class RealtimeError(Exception):
    """Root of every exception raised by django_realtime."""

    __slots__ = ()


class ConsumerError(RealtimeError):
    """A consumer was used in a way the protocol does not allow."""


class DenyConnection(ConsumerError):
    """Refuse the connection: raise from ``connect()``.

    A WebSocket handshake is answered with HTTP 403.
    """


class StopConsumer(ConsumerError):
    """End the consumer cleanly: raise from a handler."""


class InvalidMessageError(ConsumerError, ValueError):
    """A message has no usable ``type`` or names a private handler."""


class InvalidFrameError(ConsumerError):
    """A client sent a frame the consumer cannot take; close the connection.

    Raised by a WebSocket consumer's ``receive()`` (JSON consumers raise it
    for binary frames and invalid JSON). The consumer discards what the
    handler sent, logs one line, and closes with :attr:`code`.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RequestError(ConsumerError):
    """Refuse a stream protocol request: raise from a ``request_*`` handler.

    The client gets an ``error`` frame with :attr:`code` and :attr:`message`;
    what the handler sent or published before raising is dropped.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RoutingError(RealtimeError):
    """A router could not pick an application for a scope."""


class RouteNotFound(RoutingError, ValueError):
    """No route matched the scope's path or channel."""


class ChannelLayerError(RealtimeError):
    """A channel layer could not perform an operation."""

    __slots__ = ()


class ChannelFull(ChannelLayerError):
    """The channel is at capacity; the message was not sent."""

    __slots__ = ()


class GroupsExpired(ChannelLayerError):
    """A channel's messages expired unread, and the layer took it out of its groups.

    Raised once by the next ``receive()`` on the channel: its reader (a
    consumer blocked in a slow send, say) was taken for gone. WebSocket
    consumers close with 4008 on it, so that the client reconnects and joins
    its groups again.

    Attributes:
        channel: The channel.
        groups: The groups it was taken out of.
    """

    def __init__(self, channel: str, groups: tuple[str, ...]) -> None:
        self.channel = channel
        self.groups = groups
        super().__init__(
            f"Channel {channel!r} was not read for longer than the layer's "
            f"expiry: it was taken out of its groups {sorted(groups)}."
        )


class InvalidChannelName(ChannelLayerError, TypeError):
    """A channel or group name does not follow the naming rules."""


class InvalidChannelLayerError(ChannelLayerError, ValueError):
    """``CHANNEL_LAYERS`` names a backend that cannot be loaded or used."""


def _adopt_channels_channel_full() -> None:
    """Make Channels' ``ChannelFull`` a subclass of ours.

    ``except`` matches on the real class hierarchy (``__subclasscheck__`` is
    not consulted), so a virtual subclass would not be caught; re-basing is
    the only way for ``except ChannelFull`` to catch what channels-redis
    raises without wrapping every layer call.
    """
    try:
        from channels import exceptions as channels_exceptions
    except ImportError:
        return
    theirs = channels_exceptions.ChannelFull
    if not issubclass(theirs, ChannelFull):
        theirs.__bases__ = (ChannelFull,)


class LiveServerError(RealtimeError, RuntimeError):
    """A live test server did not start, or was not running when needed."""


_adopt_channels_channel_full()
