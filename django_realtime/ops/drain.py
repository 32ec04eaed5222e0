"""Graceful drain: refuse new WebSockets, close the open ones in batches, stop.

A drain, started by SIGTERM, by ``manage.py drain`` or by :func:`drain` /
:func:`start_drain`:

1. makes :func:`is_draining` true: every new handshake is refused (HTTP
   403) before ``connect()`` runs, and the :func:`ready` view answers 503,
   so a load balancer sends new clients elsewhere;
2. closes every open WebSocket with 1012 (service restart), ``BATCH_SIZE``
   connections every ``INTERVAL`` seconds, so that the clients reconnect
   to other processes in a spread-out stream instead of all at once (each
   close waits for the handler the connection is running, so its replies
   are sent before the close);
3. gives the connections until ``DEADLINE`` seconds after the start to end
   (their ``disconnect()`` runs), then reports, and for SIGTERM and the
   command calls the server's own SIGTERM handler: uvicorn and daphne stop
   as they would have.

The drain follows connections through :mod:`django_realtime.ops.lifecycle`
(``AppConfig.ready()`` calls :func:`install`). The first connection of a
process that runs under a server joins the control group that ``manage.py
drain`` sends to (:mod:`django_realtime.ops.drain_control`), unless the
default channel layer is the in-memory one or ``CONTROL`` is off.

SIGTERM is the server's: the drain takes it over only when asked, with
``REALTIME["DRAIN"]["SIGNAL"] = True`` or :func:`handle_sigterm` in
``asgi.py``. Then the first connection replaces the server's SIGTERM
handler with one that drains and then chains to it, and a second SIGTERM
chains at once (:mod:`django_realtime.ops.drain_signal`). SIGINT (Ctrl-C)
is always left to the server.

daphne (through autobahn) refuses to send 1012; there the close code is
:data:`DAPHNE_CLOSE_SERVICE_RESTART` (4012), and the reason is not sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse

from django_realtime.conf import DEFAULTS, get_setting
from django_realtime.ops import drain_control, drain_signal, lifecycle
from django_realtime.ops.drain_control import CONTROL_GROUP, DrainRequest
from django_realtime.ops.drain_plan import plan_batches

__all__ = [
    "CLOSE_SERVICE_RESTART",
    "CONTROL_GROUP",
    "DAPHNE_CLOSE_SERVICE_RESTART",
    "DrainReport",
    "drain",
    "handle_sigterm",
    "install",
    "is_draining",
    "plan_batches",
    "ready",
    "resume",
    "start_drain",
    "track",
    "untrack",
]

logger = logging.getLogger(__name__)

#: The close code of a drain: 1012, "service restart" (RFC 6455, IANA).
CLOSE_SERVICE_RESTART = 1012
#: What 1012 becomes on daphne, which sends only 1000 and 3000-4999.
DAPHNE_CLOSE_SERVICE_RESTART = 4012
# Connections in the order they were accepted (a dict keeps it), with the
# loop each runs on: a drain closes the oldest of its loop first.
_live: dict[Any, asyncio.AbstractEventLoop] = {}
_draining = False
# The loop the consumers run on: start_drain() and the signal handler
# schedule the drain there.
_loop: asyncio.AbstractEventLoop | None = None
_current: asyncio.Task[DrainReport] | None = None
# The connections the drain under way waits for, and the event untrack()
# sets when the last of them has ended.
_pending: set[Any] = set()
_emptied: asyncio.Event | None = None
_engaged = False
# handle_sigterm() was called: take SIGTERM over whatever the setting says.
_sigterm_wanted = False
_control: asyncio.Task[None] | None = None
# Tasks nobody awaits, kept here so that they are not collected mid-way.
_background: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class DrainReport:
    """What a drain did.

    Attributes:
        closed: Connections the drain sent a close to.
        still_open: Connections that had not ended at the deadline (the
            server closes or drops them when it stops).
        elapsed: Seconds from the start of the drain to its end.
    """

    closed: int
    still_open: int
    elapsed: float


def track(consumer: Any) -> None:
    """Count ``consumer`` among the connections a drain closes.

    The first call in a process also joins the control group and, if asked
    (see :func:`handle_sigterm`), takes SIGTERM over, when the process runs
    under a server.
    """
    global _loop
    _loop = _live[consumer] = asyncio.get_running_loop()
    if not _engaged:
        _engage(_loop)


def untrack(consumer: Any) -> None:
    """Forget ``consumer``: its connection has ended."""
    _live.pop(consumer, None)
    if _emptied is not None and consumer in _pending:
        _pending.discard(consumer)
        if not _pending:
            _emptied.set()


class _Tracker:
    """The drain's view of the connection lifecycle."""

    def opened(self, connection: Any) -> None:
        track(connection)

    def closed(self, connection: Any) -> None:
        untrack(connection)

    def __repr__(self) -> str:
        return "<drain tracker>"


_tracker = _Tracker()


def _gate(scope: dict[str, Any]) -> str | None:
    return "draining" if _draining else None


def install() -> None:
    """Follow connections and refuse handshakes while draining (idempotent)."""
    lifecycle.observe(_tracker)
    lifecycle.add_gate(_gate)


def handle_sigterm() -> None:
    """Drain on SIGTERM, then stop the server as its own handler would.

    Call it in ``asgi.py`` (or set ``REALTIME["DRAIN"]["SIGNAL"] = True``):
    the first connection then replaces the server's SIGTERM handler with
    one that drains and chains to it. Off by default, since the signal
    belongs to the server.
    """
    global _sigterm_wanted
    _sigterm_wanted = True
    install()


def open_count() -> int:
    """Return how many accepted WebSocket connections this process holds."""
    return len(_live)


def is_draining() -> bool:
    """Return whether this process is draining (refusing new handshakes)."""
    return _draining


def resume() -> None:
    """Accept new handshakes again after a drain that did not stop the process."""
    global _draining
    _draining = False


async def drain(
    *,
    batch_size: int | None = None,
    interval: float | None = None,
    deadline: float | None = None,
    code: int = CLOSE_SERVICE_RESTART,
    reason: str | None = None,
) -> DrainReport:
    """Refuse new handshakes, close every WebSocket in batches; wait for them.

    Arguments left out take their value from ``REALTIME["DRAIN"]``. The
    process keeps refusing handshakes afterwards (until :func:`resume`);
    it does not stop. A drain already under way is joined, whatever the
    arguments; cancelling the caller does not cancel the drain.

    Args:
        batch_size: Connections closed together.
        interval: Seconds between batches.
        deadline: Seconds from the start until the drain gives up on the
            connections still open.
        code: The close code.
        reason: The close reason (at most 123 UTF-8 bytes).

    Returns:
        The :class:`DrainReport`.
    """
    global _current
    if _current is None or _current.done():
        options = _options()
        _current = asyncio.get_running_loop().create_task(
            _drain(
                options["BATCH_SIZE"] if batch_size is None else batch_size,
                options["INTERVAL"] if interval is None else interval,
                options["DEADLINE"] if deadline is None else deadline,
                code,
                options["REASON"] if reason is None else reason,
            ),
            # Not the caller's context: a handler's would keep its consumer
            # (through its outbox) alive as long as the task.
            context=contextvars.Context(),
        )
    return await asyncio.shield(_current)


def start_drain(
    *, stop: bool = True, **parameters: Any
) -> concurrent.futures.Future[DrainReport]:
    """Start a drain from any thread (a view, a signal handler); do not wait.

    Args:
        stop: Stop the server afterwards, as SIGTERM does; otherwise accept
            handshakes again (see :func:`resume`).
        **parameters: Arguments of :func:`drain`.

    Returns:
        A future of the :class:`DrainReport` (do not wait for it on the
        loop that serves the connections).
    """
    loop = _loop
    if loop is None or loop.is_closed():
        # No connection was ever accepted here: nothing to close.
        global _draining
        _draining = True
        done: concurrent.futures.Future[DrainReport] = concurrent.futures.Future()
        done.set_result(DrainReport(0, 0, 0.0))
        if stop:
            drain_signal.stop_server()
        else:
            resume()
        return done
    return asyncio.run_coroutine_threadsafe(_drain_then(stop, parameters), loop)


async def ready(request: HttpRequest) -> HttpResponse:
    """Answer 200, or 503 while the process drains: a readiness probe.

    Route it (``path("ready/", drain.ready)``) and point the load balancer's
    health check or Kubernetes' ``readinessProbe`` at it, so that new
    clients go elsewhere as soon as a drain starts.
    """
    status, text = (503, "draining\n") if _draining else (200, "ready\n")
    response = HttpResponse(text, status=status, content_type="text/plain")
    response["Cache-Control"] = "no-store"
    return response


# -- the drain ---------------------------------------------------------------


def _options() -> dict[str, Any]:
    return {**DEFAULTS["DRAIN"], **(get_setting("DRAIN") or {})}


async def _drain(
    batch_size: int, interval: float, deadline: float, code: int, reason: str
) -> DrainReport:
    global _draining, _emptied
    _draining = True
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + deadline
    targets = _open_on(loop)
    plan = plan_batches(len(targets), batch_size, interval, deadline)
    logger.info(
        "Draining: closing %d WebSocket connections with %d, in %d batches "
        "over %.1f s; deadline %.1f s.",
        len(targets),
        code,
        len(plan),
        plan[-1][0] if plan else 0.0,
        deadline,
    )
    _pending.clear()
    _pending.update(targets)
    _emptied = asyncio.Event()
    closes: set[asyncio.Task[bool]] = set()

    def close(consumer: Any) -> None:
        if consumer in _live:
            closes.add(loop.create_task(_close(consumer, code, reason)))

    try:
        async with asyncio.timeout_at(end):
            for at, size in plan:
                delay = start + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing: the batch's turn
                batch, targets = targets[:size], targets[size:]
                for consumer in batch:
                    close(consumer)
            # Handshakes that were past the draining check when it started.
            for consumer in _open_on(loop):
                if consumer not in _pending:
                    _pending.add(consumer)
                    close(consumer)
            if closes:
                await asyncio.wait(closes)
            if _pending:
                await _emptied.wait()
    except TimeoutError:
        pass
    finally:
        for task in closes:
            task.cancel()
        _emptied = None
    closed = sum(
        1
        for task in closes
        if task.done()
        and not task.cancelled()
        and task.exception() is None
        and task.result()
    )
    report = DrainReport(closed, len(_pending), loop.time() - start)
    _pending.clear()
    logger.info(
        "Drained in %.1f s: closed %d WebSocket connections, %d still open.",
        report.elapsed,
        report.closed,
        report.still_open,
    )
    return report


def _open_on(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Return the connections served by ``loop``, oldest first."""
    return [consumer for consumer, its in _live.items() if its is loop]


async def _close(consumer: Any, code: int, reason: str) -> bool:
    """Close ``consumer``'s connection once its running handler has finished.

    Returns whether a close was sent (not when the consumer had closed).
    """
    waiting = consumer._turn.take()
    if waiting is not None:
        await waiting
    try:
        if getattr(consumer, "_close_sent", False):
            return False
        message = {"type": "websocket.close", "code": code, "reason": reason}
        try:
            await consumer.base_send(message)
        except Exception as exc:
            if code != CLOSE_SERVICE_RESTART:
                logger.debug("Could not close a WebSocket with %d: %r", code, exc)
                return False
            # daphne refuses 1012 and sends nothing; any server refuses a
            # close once the client's close has crossed ours.
            fallback = {"type": "websocket.close", "code": DAPHNE_CLOSE_SERVICE_RESTART}
            try:
                await consumer.base_send(fallback)
            except Exception as again:
                logger.debug("Could not close a WebSocket: %r, %r", exc, again)
                return False
        return True
    finally:
        consumer._turn.release()


async def _drain_then(
    stop: bool,
    parameters: dict[str, Any],
    tell: Callable[[DrainReport], Awaitable[None]] | None = None,
) -> DrainReport:
    """Drain, ``tell`` the report, then stop the server or accept handshakes."""
    report = await drain(**parameters)
    if tell is not None:
        try:
            await tell(report)
        except Exception as exc:
            logger.warning("Could not tell `manage.py drain` the outcome: %s", exc)
    if stop:
        if _control is not None:
            _control.cancel()
        drain_signal.stop_server()
    else:
        resume()
    return report


def _in_background(task: asyncio.Task[Any]) -> None:
    _background.add(task)
    task.add_done_callback(_background.discard)


# -- SIGTERM and the control group -------------------------------------------


def _engage(loop: asyncio.AbstractEventLoop) -> None:
    """Take SIGTERM over if asked, and join the control group, under a server."""
    global _engaged, _control
    _engaged = True
    if not drain_signal.under_server():
        return
    options = _options()
    if options["SIGNAL"] or _sigterm_wanted:
        drain_signal.take_over(_start_for_sigterm)
    if options["CONTROL"]:
        layer = drain_control.control_layer()
        if layer is not None:
            # track() runs in the first consumer's handler: a copy of its
            # context would keep that consumer alive for the process's life.
            _control = loop.create_task(
                drain_control.listen(layer, _answer), context=contextvars.Context()
            )


def _start_for_sigterm() -> bool:
    """Schedule a drain that stops the server; return ``False`` if none can run."""
    loop = _loop
    if loop is None or loop.is_closed():
        return False
    try:
        # The signal may interrupt a handler: not its context.
        loop.call_soon_threadsafe(_drain_and_stop, context=contextvars.Context())
    except RuntimeError:  # The loop has been closed meanwhile.
        return False
    return True


def _drain_and_stop() -> None:
    _in_background(asyncio.get_running_loop().create_task(_drain_then(True, {})))


async def _answer(request: DrainRequest) -> None:
    """Start the drain ``request`` asks for; tell the command, now and at the end."""
    logger.info(
        "`manage.py drain` asked this process to drain (stop: %s).", request.stop
    )
    deadline = request.parameters.get("deadline", _options()["DEADLINE"])
    loop = asyncio.get_running_loop()
    tell = await request.started(len(_open_on(loop)), deadline)
    _in_background(
        loop.create_task(_drain_then(request.stop, request.parameters, tell))
    )
