"""The stream lane of a connection: what the client gets from its streams.

A :class:`StreamLane` orders everything a connection is sent from its
streams, with no I/O and no event loop: the answers to subscribes and
unsubscribes, announced publications (:meth:`~StreamLane.publication`),
catch-ups after lost announcements (:meth:`~StreamLane.resync`) and after
gaps. They wait in one queue, in order; :meth:`~StreamLane.next_action`
returns what to do next (:mod:`django_realtime.streams.actions`); a
:class:`~.actions.Listen` or :class:`~.actions.Read` waits for its result
(:meth:`~StreamLane.listened`, :meth:`~StreamLane.history_read`) before
the next action.

Rules:

- A subscription gets each publication once, in offset order, with no gap
  between replay and live delivery (:class:`~.cursor.Cursor`), or a
  ``lost`` frame that says why not. Every subscribe and unsubscribe on
  the lane is answered once.
- At most ``max_queued`` publications (``max_queued_bytes`` of payload)
  wait; over either, ``slow_client_policy`` drops them to be caught up
  from history (``"catch_up"``), or closes with ``CLOSE_TOO_SLOW``
  (``"close"``).
- A subscription with a filter (:mod:`~django_realtime.streams.filters`)
  gets its publications, live and replayed, as :class:`~.actions.Deliver`
  actions, in the same order; the others get :class:`~.actions.Send`.
- History reads that replay (a subscribe with ``since``, a catch-up) spend
  the connection's :class:`~.budget.ReplayBudget`: each counts
  :data:`READ_COST` plus the bytes of the frames it sends. While the budget
  is in debt, those reads wait (:class:`~.actions.Wait` when nothing else
  is to be done) and the connection's other streams go on; the first wait
  of a connection logs one warning.

Times are passed in as ``now``: seconds on a clock that does not go
backwards, such as :func:`time.monotonic`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from django_realtime.ops.logs import printable
from django_realtime.streams.actions import (
    Action,
    Close,
    Deliver,
    Listen,
    Read,
    Send,
    Unlisten,
    Wait,
)
from django_realtime.streams.budget import ReplayBudget
from django_realtime.streams.cursor import DELIVER, GAP
from django_realtime.streams.filters import FilteredDelivery, PublicationFilter
from django_realtime.streams.lane_records import (
    CatchUpRead as _CatchUpRead,
    LaneSubscription as _Subscription,
    Resync as _Resync,
    Start as _Start,
    Stop as _Stop,
)
from django_realtime.streams.limits import SessionLimits, stats
from django_realtime.streams.positions import History, Position, Publication
from django_realtime.streams.protocol import (
    CLOSE_STREAMING_FAILED,
    CLOSE_TOO_SLOW,
    encode_frame,
    error_frame,
)
from django_realtime.streams.replay import Part, catch_up_frames, start_frames

__all__ = ["READ_COST", "StreamLane"]

logger = logging.getLogger("django_realtime.streams")

#: What a history read that replays counts against the replay budget, in
#: bytes, besides the frames it sends.
READ_COST = 1024

# Publications sent in one Send at most: fewer round trips through the
# shell, and a bounded number held outside the queue's count.
_BATCH = 32


_Event = Publication | _Start | _Stop | _Resync
_Awaited = TypeVar("_Awaited", Listen, Read)


class StreamLane:
    """The stream lane of one connection.

    Args:
        limits: What the connection may hold and replay.
        now: The current time in seconds.
        label: Names the connection in log lines (its path); escaped here.
        encode: Encode a frame (a dict) as JSON text.
    """

    def __init__(
        self,
        limits: SessionLimits,
        *,
        now: float,
        label: str = "?",
        encode: Callable[[Any], str] = encode_frame,
    ) -> None:
        self.limits = limits
        self.label = printable(label)
        self.encode = encode
        #: The streams subscribed to, by name.
        self.subscriptions: dict[str, _Subscription] = {}
        #: The stream lane's queue, in order.
        self.events: deque[_Event] = deque()
        #: Streams the store announces to this connection.
        self.listening: set[str] = set()
        #: Publications in :attr:`events`, and their payload characters.
        self.queued = 0
        self.queued_bytes = 0
        #: Subscribes and unsubscribes waiting for their answer.
        self.pending = 0
        #: The session asked to close: it does nothing more.
        self.closing = False
        self.budget = ReplayBudget(limits.replay_rate, limits.replay_burst, now)
        self._resyncs: set[str] = set()
        # Reads waiting for the budget, by stream, oldest first: a start or a
        # subscription to catch up.
        self._deferred: dict[str, _Start | _Subscription] = {}
        self._ready: deque[Action] = deque()
        self._awaiting: Listen | Read | None = None
        self._reading: _Start | _CatchUpRead | None = None
        self._paced = False
        #: Subscriptions with a filter (0: _deliver and the pump look no further).
        self.filtered = 0

    def start(
        self,
        frame_id: int,
        stream: str,
        since: Position | None,
        publication_filter: PublicationFilter | None = None,
    ) -> None:
        """Subscribe to ``stream`` from ``since``; answered on this lane.

        With ``publication_filter``, the subscription's publications go
        through it (:mod:`~django_realtime.streams.filters`).
        """
        subscription = self.subscriptions[stream] = _Subscription(stream)
        if publication_filter is not None:
            subscription.delivery = FilteredDelivery(publication_filter)
            self.filtered += 1
        self.events.append(_Start(frame_id, subscription, since))
        self.pending += 1

    def stop(self, frame_id: int, stream: str) -> None:
        """Unsubscribe from ``stream``; answered on this lane."""
        if self.subscriptions.pop(stream).delivery is not None:
            self.filtered -= 1
        self.events.append(_Stop(frame_id, stream))
        self.pending += 1

    def publication(self, publication: Publication) -> Close | None:
        """Queue an announced publication; over the limits, return a :class:`Close`."""
        if self.closing:
            return None
        self.queued += 1
        self.queued_bytes += len(publication.data)
        self.events.append(publication)
        limits = self.limits
        if (
            self.queued > limits.max_queued
            or self.queued_bytes > limits.max_queued_bytes
        ):
            return self._overflow()
        return None

    def resync(self, stream: str) -> None:
        """Queue a catch-up of ``stream``: announcements may have been lost."""
        if self.closing or stream in self._resyncs:
            return
        self._resyncs.add(stream)
        self.events.append(_Resync(stream))

    def _overflow(self) -> Close | None:
        """Drop the queued publications, by the slow-client policy."""
        count, size = self.queued, self.queued_bytes
        self.queued = self.queued_bytes = 0
        stats.dropped_publications += count
        if self.limits.slow_client_policy == "close":
            stats.slow_closes += 1
            logger.warning(
                "Closing %s with %d: it does not keep up (%d publications, %d "
                "characters queued). It resumes from history when it reconnects.",
                self.label,
                CLOSE_TOO_SLOW,
                count,
                size,
            )
            return self._close(CLOSE_TOO_SLOW)
        stats.slow_catch_ups += 1
        logger.warning(
            "%s does not keep up (%d publications, %d characters queued): "
            "dropped them, to send again from history once it reads.",
            self.label,
            count,
            size,
        )
        dropped = sorted(
            {event.stream for event in self.events if type(event) is Publication}
        )
        # Control events stay; a catch-up already queued reads what was dropped.
        self.events = deque(
            event for event in self.events if type(event) is not Publication
        )
        for stream in dropped:
            self.resync(stream)
        return None

    def store_failed(self, error: str) -> Close:
        """Take notice that the history store failed on every try; return the close."""
        logger.warning(
            "Stopped streaming to %s: the history store failed (%s). "
            "Closing with %d; the client resumes when it reconnects.",
            self.label,
            printable(error),
            CLOSE_STREAMING_FAILED,
        )
        return self._close(CLOSE_STREAMING_FAILED)

    def _close(self, code: int) -> Close:
        self.closing = True
        self.events.clear()
        self._deferred.clear()
        self._ready.clear()
        self._awaiting = self._reading = None
        return Close(code)

    def next_action(self, now: float) -> Action | None:
        """Return the next thing to do at ``now``; ``None``: nothing until new input.

        Raises:
            RuntimeError: the result of the last :class:`Listen` or
                :class:`Read` was not given yet.
        """
        if self._awaiting is not None:
            raise RuntimeError(
                f"Expected the result of {self._awaiting!r} before the next action."
            )
        if self._ready:
            return self._ready.popleft()
        if self.closing:
            return None
        while True:
            if self._deferred and self.budget.ready(now):
                action = self._resume(now)
            elif self.events:
                action = self._next_event(now)
            elif self._deferred:
                return Wait(self.budget.ready_at(now))
            else:
                return None
            if action is not None:
                return action

    def listened(self, stream: str) -> None:
        """Take notice that the store announces ``stream`` (after :class:`Listen`)."""
        self._expect_result(Listen, stream)

    def history_read(self, history: History, now: float) -> None:
        """Take the result of the last :class:`Read`, done at ``now``."""
        if self.closing:
            return
        self._expect_result(Read, history.stream)
        reading, self._reading = self._reading, None
        if type(reading) is _Start:
            subscription = reading.subscription
            subscription.cursor, parts = start_frames(
                reading.frame_id, reading.since, history, self.encode
            )
            charged = reading.since is not None
        elif type(reading) is _CatchUpRead:
            subscription = reading.subscription
            cursor = subscription.cursor
            if cursor is None:  # pragma: no cover (only started ones catch up)
                raise RuntimeError(f"{history.stream!r} has not started.")
            parts = catch_up_frames(cursor, history, reading.announced, self.encode)
            charged = True
        else:  # pragma: no cover (_expect_result checked a Read was awaited)
            raise RuntimeError("A history read without a reason.")
        frames = [part if isinstance(part, str) else part.frame for part in parts]
        if charged:
            self.budget.charge(READ_COST + sum(map(len, frames)), now)
        if not parts:
            return
        if subscription.delivery is None:
            self._ready.append(Send(tuple(frames)))
        else:
            self._ready.append(Deliver(subscription.delivery, tuple(parts)))

    def _expect_result(self, kind: type[Listen | Read], stream: str) -> None:
        awaiting = self._awaiting
        if type(awaiting) is not kind or awaiting.stream != stream:
            raise RuntimeError(
                f"Expected the result of {awaiting!r}, got one of "
                f"{kind.__name__}({stream!r})."
            )
        self._awaiting = None

    def _send(self, frame: dict[str, Any]) -> Send:
        return Send((self.encode(frame),))

    def _next_event(self, now: float) -> Action | None:
        events = self.events
        event = events[0]
        if isinstance(event, Publication):
            return self._deliver(now)
        if isinstance(event, _Start):
            return self._start(event, now)
        events.popleft()
        if isinstance(event, _Stop):
            return self._stop(event)
        self._resyncs.discard(event.stream)
        subscription = self.subscriptions.get(event.stream)
        if subscription is None or subscription.cursor is None or subscription.waiting:
            return None
        return self._catch_up(subscription, None, now)

    def _deliver(self, now: float) -> Action | None:
        """Send the publications at the head of the queue that come next."""
        events, subscriptions = self.events, self.subscriptions
        frames: list[str] = []
        filtered = self.filtered
        while events and len(frames) < _BATCH:
            event = events[0]
            if type(event) is not Publication:
                break
            subscription = subscriptions.get(event.stream)
            # None: unsubscribed, or a start or a waiting catch-up reads it.
            cursor = (
                None
                if subscription is None or subscription.waiting
                else subscription.cursor
            )
            verdict = None if cursor is None else cursor.verdict(event)
            if verdict == GAP and frames:
                break  # send what came before it first
            if (
                filtered
                and verdict == DELIVER
                and subscription is not None
                and subscription.delivery is not None
            ):
                if frames:
                    break
                return self._deliver_filtered(subscription, subscription.delivery)
            events.popleft()
            self.queued -= 1
            self.queued_bytes -= len(event.data)
            if cursor is None or subscription is None:
                continue
            if verdict == DELIVER:
                cursor.advance(event)
                frames.append(event.frame)
            elif verdict == GAP:
                logger.info(
                    "Gap in %s before offset %d (had %d): reading history.",
                    event.stream,
                    event.offset,
                    cursor.offset,
                )
                return self._catch_up(subscription, event, now)
        return Send(tuple(frames)) if frames else None

    def _deliver_filtered(
        self, subscription: _Subscription, delivery: FilteredDelivery
    ) -> Deliver:
        """Deliver the run of ``subscription``'s next publications at the head."""
        events = self.events
        cursor = subscription.cursor
        parts: list[Part] = []
        while events and len(parts) < _BATCH:
            event = events[0]
            if (
                type(event) is not Publication
                or event.stream != subscription.stream
                or cursor is None
                or cursor.verdict(event) != DELIVER
            ):
                break
            events.popleft()
            self.queued -= 1
            self.queued_bytes -= len(event.data)
            cursor.advance(event)
            parts.append(event)
        return Deliver(delivery, tuple(parts))

    def _start(self, start: _Start, now: float) -> Action | None:
        stream = start.subscription.stream
        if self.subscriptions.get(stream) is not start.subscription:
            self.events.popleft()
            self.pending -= 1
            return self._send(self._cancelled(start))
        if stream not in self.listening:
            # Listen before reading, so nothing published in between is
            # missed; what the read also returns is dropped as a duplicate.
            # The start stays at the head of the queue until then.
            self.listening.add(stream)
            return self._expect(Listen(stream))
        self.events.popleft()
        self.pending -= 1
        if start.since is not None and not self.budget.ready(now):
            self._defer(stream, start)
            return None
        return self._read_start(start)

    def _read_start(self, start: _Start) -> Read:
        self._reading = start
        return self._expect(Read(start.subscription.stream, start.since))

    def _stop(self, stop: _Stop) -> Action:
        stream = stop.stream
        frames = []
        deferred = self._deferred.get(stream)
        if deferred is not None:
            # Its subscription is gone (unsubscribes come in order).
            del self._deferred[stream]
            if type(deferred) is _Start:
                frames.append(self.encode(self._cancelled(deferred)))
        self.pending -= 1
        frames.append(
            self.encode({"kind": "unsubscribed", "id": stop.frame_id, "stream": stream})
        )
        send = Send(tuple(frames))
        if stream in self.listening and stream not in self.subscriptions:
            self.listening.discard(stream)
            self._ready.append(send)
            return Unlisten(stream)
        return send

    @staticmethod
    def _cancelled(start: _Start) -> dict[str, Any]:
        # Unsubscribed before it started: every frame gets its answer.
        return error_frame(
            start.frame_id,
            "cancelled",
            f"Unsubscribed from {start.subscription.stream!r} before the "
            "subscription started.",
        )

    def _catch_up(
        self, subscription: _Subscription, announced: Publication | None, now: float
    ) -> Read | None:
        if not self.budget.ready(now):
            subscription.waiting = True
            self._defer(subscription.stream, subscription)
            return None
        return self._read_catch_up(subscription, announced)

    def _read_catch_up(
        self, subscription: _Subscription, announced: Publication | None
    ) -> Read:
        cursor = subscription.cursor
        if cursor is None:  # pragma: no cover (only started subscriptions catch up)
            raise RuntimeError(f"{subscription.stream!r} has not started.")
        self._reading = _CatchUpRead(subscription, announced)
        return self._expect(Read(subscription.stream, cursor.position))

    def _defer(self, stream: str, entry: _Start | _Subscription) -> None:
        self._deferred[stream] = entry
        if not self._paced:
            self._paced = True
            stats.replays_paced += 1
            rate = self.limits.replay_rate
            logger.warning(
                "Pacing the replays of %s: it is over its replay budget (%d "
                "bytes at once, %d a second). Its history reads wait for the "
                "budget; its other streams go on.",
                self.label,
                self.limits.replay_burst,
                rate or 0,
            )

    def _resume(self, now: float) -> Action | None:
        """Do the oldest read that waited for the budget."""
        stream = next(iter(self._deferred))
        entry = self._deferred.pop(stream)
        if isinstance(entry, _Start):
            if self.subscriptions.get(stream) is not entry.subscription:
                return self._send(self._cancelled(entry))
            return self._read_start(entry)
        entry.waiting = False
        if self.subscriptions.get(stream) is not entry:
            return None
        return self._read_catch_up(entry, None)

    def _expect(self, action: _Awaited) -> _Awaited:
        self._awaiting = action
        return action
