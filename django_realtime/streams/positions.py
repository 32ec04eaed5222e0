"""Positions in a stream, the publications at them, and history windows.

A stream is a named, ordered log of server-to-client messages. Each message
is a :class:`Publication` at a :class:`Position`: an ``epoch``, an opaque
string naming one unbroken run of the log, and an ``offset``, counting the
messages of that epoch from 1. Offset 0 is the position before the first
message. When a store loses a stream's history (a process restart for the
in-memory store, a flush or expiry in Redis), the stream starts a new epoch
at offset 1, so a position is never reused for a different message.

A store keeps a bounded window of each stream's most recent publications,
by count, bytes and age (:class:`HistoryPolicy`). A subscriber that comes
back with the position of the last message it saw gets everything after it
if that is still in the window; otherwise it is told why not
(:func:`recovery_of`).

Everything here is pure: times are passed in as ``now`` (seconds).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django_realtime.ops.logs import printable

__all__ = [
    "EPOCH_CHANGED",
    "INVALID_POSITION",
    "OUTSIDE_WINDOW",
    "History",
    "HistoryPolicy",
    "HistoryWindow",
    "Position",
    "Publication",
    "encode_data",
    "recovery_of",
    "validate_stream_name",
]

#: The client's epoch is not the stream's: the history it knew is gone.
EPOCH_CHANGED = "epoch_changed"
#: Messages after the client's position have left the history window.
OUTSIDE_WINDOW = "outside_window"
#: The position cannot exist (a negative offset, or one past the newest).
INVALID_POSITION = "invalid_position"

_STREAM_NAME = re.compile(r"[A-Za-z0-9_.:@=-]{1,200}")


def validate_stream_name(name: Any) -> str:
    """Return ``name`` if it is a valid stream name.

    Stream names are 1 to 200 ASCII letters, digits and ``_ . : @ = -``.

    Raises:
        ValueError: ``name`` is not a valid stream name (the message quotes
            at most a few hundred characters of it).
    """
    if type(name) is not str or _STREAM_NAME.fullmatch(name) is None:
        raise ValueError(
            "Expected a stream name of 1 to 200 ASCII letters, digits and "
            f"'_.:@=-', got {printable(repr(name))}."
        )
    return name


def encode_data(data: Any) -> str:
    """Encode a publication's payload as compact JSON text.

    Raises:
        TypeError: ``data`` is not JSON-serialisable.
    """
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a stream: the last message seen, or the newest one."""

    epoch: str
    offset: int


class Publication:
    """One message of a stream at its position.

    ``data`` is the payload as JSON text, encoded once when it was
    published; :attr:`frame` is the wire frame every subscriber receives,
    built once however many there are.
    """

    __slots__ = ("_frame", "data", "epoch", "offset", "stream")

    def __init__(self, stream: str, epoch: str, offset: int, data: str) -> None:
        self.stream = stream
        self.epoch = epoch
        self.offset = offset
        self.data = data
        self._frame: str | None = None

    @property
    def position(self) -> Position:
        """Return where this publication is."""
        return Position(self.epoch, self.offset)

    @property
    def frame(self) -> str:
        """Return the ``publication`` frame for this message (JSON text)."""
        if self._frame is None:
            stream, epoch = json.dumps(self.stream), json.dumps(self.epoch)
            self._frame = (
                f'{{"kind":"publication","stream":{stream},"epoch":{epoch},'
                f'"offset":{self.offset},"data":{self.data}}}'
            )
        return self._frame

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Publication):
            return NotImplemented
        return (self.stream, self.epoch, self.offset, self.data) == (
            other.stream,
            other.epoch,
            other.offset,
            other.data,
        )

    def __hash__(self) -> int:
        return hash((self.stream, self.epoch, self.offset))

    def __repr__(self) -> str:
        return f"<Publication {self.stream}@{self.epoch}:{self.offset}>"


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a stream's recent history a store keeps.

    A limit of ``None`` means no limit of that kind; at least one limit
    must be set, so history is always bounded.

    Attributes:
        max_count: Most publications kept.
        max_bytes: Most bytes of payload kept (a bigger payload is refused).
        max_age: Seconds a publication stays in the window.
    """

    max_count: int | None = 1000
    max_bytes: int | None = 1024 * 1024
    max_age: float | None = 3600.0

    def __post_init__(self) -> None:
        for name in ("max_count", "max_bytes", "max_age"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value <= 0
            ):
                raise ValueError(f"Expected {name} > 0 or None, got {value!r}.")
        if self.max_count is None and self.max_bytes is None and self.max_age is None:
            raise ValueError(
                "A history policy needs at least one of max_count, max_bytes "
                "and max_age: history must be bounded."
            )

    def check_size(self, stream: str, data: str) -> int:
        """Return the size of ``data`` in bytes, if one payload may be that big.

        Raises:
            ValueError: the payload alone is over ``max_bytes``.
        """
        size = len(data.encode())
        if self.max_bytes is not None and size > self.max_bytes:
            raise ValueError(
                f"A publication to {stream!r} of {size} bytes is over the "
                f"stream's max_bytes ({self.max_bytes}): it could never be "
                "replayed, so it is refused."
            )
        return size


def recovery_of(since: Position, epoch: str, newest: int, oldest: int) -> str | None:
    """Return why history after ``since`` cannot be replayed, or ``None``.

    Args:
        since: The last position the subscriber saw.
        epoch: The stream's epoch.
        newest: The offset of the newest publication (0: none yet).
        oldest: The offset of the oldest publication still kept
            (``newest + 1`` when none is).
    """
    if since.epoch != epoch:
        return EPOCH_CHANGED
    if since.offset < 0 or since.offset > newest:
        return INVALID_POSITION
    if since.offset < oldest - 1:
        return OUTSIDE_WINDOW
    return None


@dataclass(frozen=True, slots=True)
class History:
    """What a store answers to "what came after this position?".

    Attributes:
        stream: The stream's name.
        epoch: The stream's epoch now.
        offset: The offset of the newest publication now (0: none yet).
        publications: What came after the position asked for, oldest first
            (empty when it cannot be replayed, or none was asked for).
        reason: ``None`` if ``publications`` is everything after the
            position asked for (or no position was given); otherwise why
            not: :data:`EPOCH_CHANGED`, :data:`OUTSIDE_WINDOW` or
            :data:`INVALID_POSITION`.
    """

    stream: str
    epoch: str
    offset: int
    publications: tuple[Publication, ...] = ()
    reason: str | None = None

    @property
    def position(self) -> Position:
        """Return the stream's newest position."""
        return Position(self.epoch, self.offset)

    @property
    def recovered(self) -> bool:
        """Return whether nothing after the position asked for is missing."""
        return self.reason is None


class HistoryWindow:
    """The kept publications of one stream, in memory, within a policy.

    Args:
        stream: The stream's name.
        epoch: The epoch this window numbers.
    """

    __slots__ = ("_entries", "bytes", "epoch", "offset", "stream")

    def __init__(self, stream: str, epoch: str) -> None:
        self.stream = stream
        self.epoch = epoch
        #: The newest offset given out (0: none yet).
        self.offset = 0
        #: The total payload size of what is kept.
        self.bytes = 0
        # (publication, size, published at), oldest first.
        self._entries: deque[tuple[Publication, int, float]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Publication]:
        return (entry[0] for entry in self._entries)

    @property
    def oldest(self) -> int:
        """Return the offset of the oldest kept publication (newest + 1 if none)."""
        return self._entries[0][0].offset if self._entries else self.offset + 1

    def append(self, data: str, policy: HistoryPolicy, now: float) -> Publication:
        """Give ``data`` the next offset, keep it, and trim to ``policy``.

        Raises:
            ValueError: the payload alone is over the policy's ``max_bytes``.
        """
        size = policy.check_size(self.stream, data)
        self.offset += 1
        publication = Publication(self.stream, self.epoch, self.offset, data)
        self._entries.append((publication, size, now))
        self.bytes += size
        self.trim(policy, now)
        return publication

    def trim(self, policy: HistoryPolicy, now: float) -> int:
        """Drop what ``policy`` no longer keeps at ``now``; return how many."""
        entries = self._entries
        dropped = 0
        while entries and (
            (policy.max_count is not None and len(entries) > policy.max_count)
            or (policy.max_bytes is not None and self.bytes > policy.max_bytes)
            or (policy.max_age is not None and now - entries[0][2] > policy.max_age)
        ):
            self.bytes -= entries.popleft()[1]
            dropped += 1
        return dropped

    def since(
        self, position: Position | None, policy: HistoryPolicy, now: float
    ) -> History:
        """Return what came after ``position`` (``None``: just where we are)."""
        self.trim(policy, now)
        if position is None:
            return History(self.stream, self.epoch, self.offset)
        reason = recovery_of(position, self.epoch, self.offset, self.oldest)
        if reason is not None:
            return History(self.stream, self.epoch, self.offset, reason=reason)
        first = position.offset + 1 - self.oldest
        publications = tuple(
            entry[0] for entry in itertools.islice(self._entries, first, None)
        )
        return History(self.stream, self.epoch, self.offset, publications)
