"""Run a session's stream lane on the event loop, for any transport.

A :class:`SessionPump` is the store :class:`~django_realtime.streams.stores.
base.Listener` of one connection and the one task that does what its
:class:`~django_realtime.streams.session.StreamSession` asks on the stream
lane: store calls (retried a few times: reads and listens change nothing,
so a Redis blip costs a retry, not the connection), waits, and sends
through the transport's ``send`` coroutine function. It alone writes the
connection's stream frames, in the session's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from django_realtime.ops.logs import printable
from django_realtime.streams.actions import (
    Close,
    Deliver,
    Listen,
    Read,
    Send,
    Unlisten,
    Wait,
)
from django_realtime.streams.positions import Publication
from django_realtime.streams.protocol import CLOSE_STREAMING_FAILED
from django_realtime.streams.session import StreamSession
from django_realtime.streams.stores.base import HistoryStore

__all__ = ["SessionPump"]

logger = logging.getLogger("django_realtime.streams")

_T = TypeVar("_T")

# Seconds between the tries of a store call.
_RETRY_DELAYS = (0.05, 0.25, 1.0)


class _StoreFailed(Exception):
    """The history store failed on every try."""


async def _with_retries(call: Callable[[], Awaitable[_T]]) -> _T:
    """Return ``await call()``, trying again after a failure, a few times."""
    for delay in _RETRY_DELAYS:
        try:
            return await call()
        except Exception as exc:
            logger.info(
                "A history store call failed (%s); retrying in %s s.",
                printable(repr(exc)),
                delay,
            )
            await asyncio.sleep(delay)
    try:
        return await call()
    except Exception as exc:
        raise _StoreFailed(repr(exc)) from exc


class SessionPump:
    """Do a session's stream-lane actions; listen to the store for it.

    Args:
        session: The connection's session.
        store: The history store.
        send: Send one frame (JSON text) to the client.
        close: Close the connection with a code.
        clock: The session's clock (seconds, never going back).
    """

    def __init__(
        self,
        session: StreamSession,
        store: HistoryStore,
        send: Callable[[str], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.store = store
        self._send = send
        self._close = close
        self.clock = clock
        self._closing: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())

    # The session's queue, for tests and introspection.
    @property
    def events(self) -> Collection[object]:
        """Return the session's stream-lane queue."""
        return self.session.events

    @property
    def queued(self) -> int:
        """Return how many publications wait."""
        return self.session.queued

    @property
    def queued_bytes(self) -> int:
        """Return the payload characters of the publications that wait."""
        return self.session.queued_bytes

    # The store's Listener protocol: queue, never await.
    def publication(self, publication: Publication) -> None:
        """Queue an announced publication, within the session's limits."""
        session = self.session
        if session.filtered and session.withhold(publication):
            return
        close = session.publication(publication)
        if close is None:
            self.wake()
            return
        # The pump may be stuck in a send to this client: stop it.
        self.task.cancel()
        # Kept: the loop holds only a weak reference to a task.
        self._closing = asyncio.get_running_loop().create_task(
            self._close_quietly(close.code)
        )

    def resync(self, stream: str) -> None:
        """Queue a catch-up of ``stream``: announcements may have been lost."""
        self.session.resync(stream)
        self.wake()

    def wake(self) -> None:
        """Have the task look at the session again (new input arrived)."""
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    async def stop(self) -> None:
        """Stop writing and stop listening to every stream."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for stream in list(self.session.listening):
            try:
                await self.store.unlisten(stream, self)
            except Exception:
                logger.debug("Could not unlisten %s.", stream, exc_info=True)
        self.session.listening.clear()

    async def _run(self) -> None:
        session, store, send = self.session, self.store, self._send
        loop = asyncio.get_running_loop()
        try:
            while True:
                match session.next_action(self.clock()):
                    case Send(frames):
                        for frame in frames:
                            await send(frame)
                    case Deliver(delivery, parts):
                        for frame in await delivery.render(parts):
                            await send(frame)
                    case None:
                        await self._idle(loop, None)
                    case Wait(until):
                        await self._idle(loop, until)
                    case Read(stream, since):
                        history = await _with_retries(lambda: store.read(stream, since))
                        session.history_read(history, self.clock())
                    case Listen(stream):
                        await _with_retries(lambda: store.listen(stream, self))
                        session.listened(stream)
                    case Unlisten(stream):
                        await store.unlisten(stream, self)
                    case Close(code):
                        await self._close_quietly(code)
                        return
        except _StoreFailed as exc:
            close = session.store_failed(str(exc))
            await self._close_quietly(close.code)
        except Exception as exc:
            # A send failed: the client has gone, and the server is telling
            # the consumer. Anything else is a bug: close, the client resumes.
            logger.info(
                "Stopped streaming to %s (%s: %s).",
                session.label,
                type(exc).__name__,
                printable(str(exc)),
            )
            logger.debug("Traceback of the stop:", exc_info=True)
            await self._close_quietly(CLOSE_STREAMING_FAILED)

    async def _idle(self, loop: asyncio.AbstractEventLoop, until: float | None) -> None:
        """Wait for new input, or until ``until`` on the clock."""
        wakeup = self._wakeup = loop.create_future()
        if until is None:
            await wakeup
            return
        timer = loop.call_later(max(until - self.clock(), 0.0), self.wake)
        try:
            await wakeup
        finally:
            timer.cancel()

    async def _close_quietly(self, code: int) -> None:
        try:
            await self._close(code)
        except Exception:
            logger.debug("Could not close the connection.", exc_info=True)
