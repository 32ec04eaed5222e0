"""The base class of channel layers: name rules, capacity settings, extensions.

A channel layer carries messages (dicts) between processes and consumers. The
names and methods follow Channels' channel layer specification, so a layer
written for Channels, such as channels-redis, plugs in unmodified, and a layer
written on :class:`BaseChannelLayer` works with Channels too.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, ClassVar, Protocol

from django_realtime.exceptions import InvalidChannelName, InvalidMessageError

__all__ = [
    "MAX_NAME_LENGTH",
    "BaseChannelLayer",
    "CapacityPattern",
    "ChannelLayer",
    "log_full_members",
    "require_seconds",
]

#: Channel and group names must be shorter than this many characters.
MAX_NAME_LENGTH = 100

#: A ``channel_capacity`` key: a glob string or a compiled regular expression.
CapacityPattern = str | re.Pattern[str]

# ASCII only, matched whole (re.match with "$" would take a trailing newline).
_CHANNEL_NAME = re.compile(r"[a-zA-Z0-9\-_.]+(![a-zA-Z0-9\-_.]*)?")
_GROUP_NAME = re.compile(r"[a-zA-Z0-9\-_.]+")
_ALLOWED = "ASCII letters, digits, hyphens, underscores and periods"
_RESERVED_KEY = "__asgi_channel__"


class ChannelLayer(Protocol):
    """Describe what consumers may call on any channel layer.

    Both :class:`BaseChannelLayer` subclasses and channels-redis layers fit.
    The group methods and :meth:`flush` exist when :attr:`extensions` lists
    ``"groups"`` and ``"flush"``.
    """

    @property
    def extensions(self) -> list[str]:
        """Return the optional parts of the specification implemented."""
        ...

    async def send(self, channel: str, message: dict[str, Any], /) -> None: ...

    async def receive(self, channel: str, /) -> dict[str, Any]: ...

    async def new_channel(self, prefix: str = ..., /) -> str: ...

    async def group_add(self, group: str, channel: str, /) -> None: ...

    async def group_discard(self, group: str, channel: str, /) -> None: ...

    async def group_send(self, group: str, message: dict[str, Any], /) -> None: ...

    async def flush(self) -> None: ...


def _compile_capacities(
    channel_capacity: Mapping[CapacityPattern, int] | None,
) -> list[tuple[re.Pattern[str], int]]:
    """Turn ``channel_capacity`` into (regex, capacity) pairs, keeping order."""
    compiled: list[tuple[re.Pattern[str], int]] = []
    for pattern, capacity in (channel_capacity or {}).items():
        if isinstance(pattern, str):
            regex = re.compile(fnmatch.translate(pattern))
        elif isinstance(pattern, re.Pattern):
            regex = pattern
        else:
            raise TypeError(
                "channel_capacity keys must be glob strings or compiled regular "
                f"expressions, got {pattern!r}."
            )
        _require_capacity(capacity, f"channel_capacity[{pattern!r}]")
        compiled.append((regex, capacity))
    return compiled


def require_seconds(value: object, name: str) -> float:
    """Return ``value``, a layer option in seconds, if it is a positive number.

    Raises:
        TypeError: ``value`` is not a number (booleans are not).
        ValueError: ``value`` is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")
    return value


def log_full_members(
    log: logging.Logger,
    group: str,
    full: Collection[str],
    members: int,
    kind: object,
) -> None:
    """Log, once per ``group_send()``, the members it skipped because they were full.

    ``kind`` is the message's ``type``, which the warning names.
    """
    log.warning(
        "group_send to %r: %d of %d members were full; message dropped "
        "for them (message type %r).",
        group,
        len(full),
        members,
        kind,
    )
    log.debug("group_send to %r: full channels: %r", group, full)


def _require_capacity(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}.")


class BaseChannelLayer:
    """Provide what every channel layer shares.

    Subclasses implement :meth:`send`, :meth:`receive` and :meth:`new_channel`,
    and, if they list ``"groups"`` and ``"flush"`` in :attr:`extensions`,
    :meth:`group_add`, :meth:`group_discard`, :meth:`group_send` and
    :meth:`flush`.

    Args:
        expiry: Seconds a message waits on a channel before it is discarded.
        capacity: Messages a channel holds before ``send()`` raises
            :exc:`~django_realtime.exceptions.ChannelFull`.
        channel_capacity: Capacities for channels whose names match a pattern:
            keys are glob strings (``"http.request*"``) or compiled regular
            expressions; the first match in mapping order wins.
    """

    MAX_NAME_LENGTH: ClassVar[int] = MAX_NAME_LENGTH

    #: Optional parts of the specification this layer implements.
    extensions: ClassVar[list[str]] = []

    def __init__(
        self,
        expiry: float = 60,
        capacity: int = 100,
        channel_capacity: Mapping[CapacityPattern, int] | None = None,
    ) -> None:
        require_seconds(expiry, "expiry")
        _require_capacity(capacity, "capacity")
        self.expiry = expiry
        self.capacity = capacity
        self.channel_capacity = _compile_capacities(channel_capacity)

    # Capacity

    def get_capacity(self, channel: str) -> int:
        """Return the capacity of ``channel``: the first matching pattern's, or
        the default.
        """
        for regex, capacity in self.channel_capacity:
            if regex.match(channel):
                return capacity
        return self.capacity

    # Names

    def require_valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Check that ``name`` is a valid channel name and return ``True``.

        Args:
            name: The channel name to check.
            receive: Also require that a process-local name (one with ``!``)
                ends at the ``!``, as channel layers that receive per process
                expect.

        Raises:
            InvalidChannelName: ``name`` is not a string shorter than
                :data:`MAX_NAME_LENGTH` characters made of the allowed
                characters, with at most one ``!``.
        """
        text = _require_name(
            name, "Channel", _CHANNEL_NAME, "with an optional '!' part"
        )
        if receive and "!" in text and not text.endswith("!"):
            raise InvalidChannelName(
                "Process-local channel names passed to receive() must end at "
                f"the '!', got {name!r}."
            )
        return True

    def require_valid_group_name(self, name: object) -> bool:
        """Check that ``name`` is a valid group name and return ``True``.

        Raises:
            InvalidChannelName: ``name`` is not a string shorter than
                :data:`MAX_NAME_LENGTH` characters made of the allowed
                characters.
        """
        _require_name(name, "Group", _GROUP_NAME, "")
        return True

    def valid_channel_names(
        self, names: Iterable[object], receive: bool = False
    ) -> bool:
        """Check every name in a non-empty list of channel names.

        Raises:
            InvalidChannelName: ``names`` is empty or not a list, or one of
                the names is invalid.
        """
        if not isinstance(names, list) or not names:
            raise InvalidChannelName(
                f"Expected a non-empty list of channel names, got {names!r}."
            )
        for name in names:
            self.require_valid_channel_name(name, receive=receive)
        return True

    def require_valid_message(self, message: object) -> None:
        """Check that ``message`` can travel over a channel layer.

        Raises:
            InvalidMessageError: ``message`` is not a dict, or uses the key
                ``"__asgi_channel__"``, which layers reserve for routing.
        """
        if not isinstance(message, dict):
            raise InvalidMessageError(
                f"Channel layer messages must be dicts, got {type(message).__name__}."
            )
        if _RESERVED_KEY in message:
            raise InvalidMessageError(
                f"The key {_RESERVED_KEY!r} is reserved for channel layers; "
                "remove it from the message."
            )

    @staticmethod
    def non_local_name(name: str) -> str:
        """Return the part of ``name`` up to and including ``!``, or all of it."""
        bang = name.find("!")
        return name if bang == -1 else name[: bang + 1]

    # The specification. Subclasses override what they implement.

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement send().")

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for and return the next message on ``channel``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement receive()."
        )

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new, unique, process-local channel name."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement new_channel()."
        )

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (groups extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement the groups extension."
        )

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (groups extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement the groups extension."
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every channel in ``group`` (groups extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement the groups extension."
        )

    async def flush(self) -> None:
        """Drop every message and group (flush extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement the flush extension."
        )

    async def close(self) -> None:
        """Release the layer's resources; the default has none to release."""


def _require_name(name: object, kind: str, regex: re.Pattern[str], extra: str) -> str:
    if not isinstance(name, str):
        raise InvalidChannelName(
            f"{kind} names must be strings, got {type(name).__name__}."
        )
    if len(name) >= MAX_NAME_LENGTH:
        raise InvalidChannelName(
            f"{kind} names must be shorter than {MAX_NAME_LENGTH} characters, "
            f"got {len(name)} characters: {name[:40]!r}..."
        )
    if not regex.fullmatch(name):
        detail = f" {extra}" if extra else ""
        raise InvalidChannelName(
            f"{kind} names may contain only {_ALLOWED}{detail}, got {name!r}."
        )
    return name
