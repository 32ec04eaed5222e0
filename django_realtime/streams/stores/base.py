"""The interface every history store implements, and in-process fan-out.

A history store keeps each stream's recent publications and tells the
subscribers of this process about new ones:

- :meth:`HistoryStore.publish` gives a payload the stream's next position,
  keeps it in the window and announces it, as one step: a publication is
  never announced without being kept, nor kept at a position another one
  had.
- :meth:`HistoryStore.read` answers what came after a position.
- :meth:`HistoryStore.publish_once` publishes a payload at most once per
  key (a relayed outbox row), where the store can remember keys.
- :meth:`HistoryStore.writes_in` tells whether the store can write a
  publication in a transaction of a Django database, and
  :meth:`HistoryStore.publish_in_transaction` does it.
- :meth:`HistoryStore.listen` / :meth:`HistoryStore.unlisten` add and remove
  a :class:`Listener` of a stream in this process. Listeners of one stream
  share one subscription to the store (:class:`StreamHub`), so a
  publication reaches a thousand local subscribers for the cost of one.

Announcements may be lost (a Redis reconnect) but are never reordered
within a stream. A store that may have lost some calls
:meth:`Listener.resync` on every listener concerned, and listeners notice
any other gap from the offsets: both then :meth:`~HistoryStore.read` what
they missed.
"""

from __future__ import annotations

import abc
import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from django_realtime.streams.positions import (
    History,
    HistoryPolicy,
    Position,
    Publication,
)

__all__ = ["HistoryStore", "Listener", "PolicyTable", "StreamHub"]

logger = logging.getLogger("django_realtime.streams")


class Listener(Protocol):
    """Receives the announcements of the streams it listens to.

    Both methods are called on the event loop the listener was added from,
    and must return at once (queue the work, never await).
    """

    def publication(self, publication: Publication) -> None:
        """Take a new publication of a stream listened to."""

    def resync(self, stream: str) -> None:
        """Take notice that announcements of ``stream`` may have been lost."""


class StreamHub:
    """The listeners of each stream in this process, called on their loops.

    Listeners added from one event loop are called on that loop: directly
    when the announcement is made on it, through ``call_soon_threadsafe``
    when it comes from another thread's loop (a sync view's
    ``async_to_sync``).
    """

    def __init__(self) -> None:
        # stream -> {listener: its loop}; insertion-ordered dicts.
        self._listeners: dict[str, dict[Listener, asyncio.AbstractEventLoop]] = {}

    def __contains__(self, stream: object) -> bool:
        return stream in self._listeners

    @property
    def streams(self) -> list[str]:
        """Return the streams with at least one listener."""
        return list(self._listeners)

    def add(self, stream: str, listener: Listener) -> bool:
        """Add ``listener`` to ``stream``; return whether it is the first."""
        listeners = self._listeners.get(stream)
        first = listeners is None
        if listeners is None:
            listeners = self._listeners[stream] = {}
        listeners[listener] = asyncio.get_running_loop()
        return first

    def remove(self, stream: str, listener: Listener) -> bool:
        """Remove ``listener`` from ``stream``; return whether it was the last."""
        listeners = self._listeners.get(stream)
        if listeners is None or listeners.pop(listener, None) is None:
            return False
        if listeners:
            return False
        del self._listeners[stream]
        return True

    def announce(self, publication: Publication) -> int:
        """Hand ``publication`` to its stream's listeners; return how many."""
        listeners = self._listeners.get(publication.stream)
        if not listeners:
            return 0
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        # A snapshot: another thread may add or remove a listener meanwhile
        # (a sync view's loop subscribing while a store's thread announces).
        # Copying the items is one C call, which no other thread interrupts.
        for listener, loop in tuple(listeners.items()):
            if loop is here:
                listener.publication(publication)
            else:
                _call_threadsafe(loop, listener.publication, publication)
        return len(listeners)

    def resync(self, streams: Iterable[str] | None = None) -> None:
        """Tell the listeners of ``streams`` (default: all) to catch up."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for stream in list(self._listeners if streams is None else streams):
            for listener, loop in list(self._listeners.get(stream, {}).items()):
                if loop is here:
                    listener.resync(stream)
                else:
                    _call_threadsafe(loop, listener.resync, stream)


def _call_threadsafe(loop: asyncio.AbstractEventLoop, fn: Any, arg: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, arg)
    except RuntimeError:
        # The listener's loop has closed: its connection is gone.
        logger.debug("Dropped an announcement for a listener on a closed loop.")


class PolicyTable:
    """Pick each stream's :class:`HistoryPolicy` by name pattern.

    Args:
        patterns: ``fnmatch`` patterns (``"chat.*"``) to policies or to
            keyword arguments of :class:`HistoryPolicy`; the first pattern
            that matches a stream's name wins.
        default: The policy of streams no pattern matches.
    """

    def __init__(
        self,
        patterns: Mapping[str, HistoryPolicy | Mapping[str, Any]] | None = None,
        default: HistoryPolicy | None = None,
    ) -> None:
        self.default = default or HistoryPolicy()
        self._patterns = [
            (
                pattern,
                policy
                if isinstance(policy, HistoryPolicy)
                else HistoryPolicy(
                    **{key.lower(): value for key, value in policy.items()}
                ),
            )
            for pattern, policy in (patterns or {}).items()
        ]
        self._cache: dict[str, HistoryPolicy] = {}

    def __call__(self, stream: str) -> HistoryPolicy:
        """Return the policy of ``stream``."""
        try:
            return self._cache[stream]
        except KeyError:
            pass
        policy = self.default
        for pattern, candidate in self._patterns:
            if fnmatch.fnmatchcase(stream, pattern):
                policy = candidate
                break
        if len(self._cache) < 10_000:
            self._cache[stream] = policy
        return policy


class HistoryStore(abc.ABC):
    """Keep streams' recent history and announce new publications.

    Args:
        policies: Each stream's history policy (default: one policy for all).
        clock: Return the time in seconds (ages are measured on it).
    """

    def __init__(
        self,
        policies: PolicyTable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = policies or PolicyTable()
        self.clock = clock
        self.hub = StreamHub()

    @abc.abstractmethod
    async def publish(self, stream: str, data: str) -> Publication:
        """Keep ``data`` (JSON text) at ``stream``'s next position; announce it.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``.
        """

    async def publish_once(self, stream: str, data: str, key: str) -> Publication:
        """Publish ``data`` to ``stream`` unless ``key`` was published already.

        The outbox relay (:mod:`django_realtime.streams.relay`) gives each
        row its own key, so that a row relayed again after a crash is not
        published twice. A store that remembers keys publishes each key once
        and answers a repeated key with the first publication's position
        (its ``data`` is the payload given now). This default remembers
        nothing and publishes every call: at least once.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``.
        """
        return await self.publish(stream, data)

    def writes_in(self, using: str) -> bool:
        """Return whether the store can publish in a transaction of ``using``.

        ``using`` is a key of ``DATABASES``. True only for a store whose
        history lives in that database, so that
        :meth:`publish_in_transaction` writes in the caller's transaction.
        """
        return False

    def publish_in_transaction(self, stream: str, data: str, using: str) -> Publication:
        """Publish ``data`` in the current transaction of Django's ``using``.

        Only for a store whose :meth:`writes_in` is true for ``using``. The
        publication is written by the caller's transaction: kept if it
        commits, gone if it rolls back; the listening processes learn of it
        once it commits, or at their next look if the publisher died first.

        Raises:
            ValueError: the payload alone is over the stream's ``max_bytes``,
                or the store cannot write in ``using``.
        """
        raise ValueError(
            f"{type(self).__name__} cannot publish in a transaction of "
            f"DATABASES[{using!r}]: its history lives elsewhere."
        )

    @abc.abstractmethod
    async def read(self, stream: str, since: Position | None = None) -> History:
        """Return what ``stream`` published after ``since``, and where it is now.

        With ``since=None``, return only the stream's newest position.
        """

    async def listen(self, stream: str, listener: Listener) -> None:
        """Announce ``stream``'s new publications to ``listener``."""
        self.hub.add(stream, listener)

    async def unlisten(self, stream: str, listener: Listener) -> None:
        """Stop announcing ``stream`` to ``listener``."""
        self.hub.remove(stream, listener)

    @abc.abstractmethod
    async def flush(self) -> None:
        """Forget every stream's history: each starts a new epoch.

        For tests of what clients do when history is lost.
        """

    async def close(self) -> None:  # noqa: B027 (a store may hold nothing)
        """Release the store's connections."""
