"""``manage.py drain`` through the channel layer: the control group.

Processes on other hosts or in other containers cannot be signalled, so
the drain command goes through the default channel layer. A server process
that listens (see :func:`listen`) has a channel of its own in
:data:`CONTROL_GROUP` and renews its membership every quarter of the
layer's ``group_expiry``, so that a process that runs for months stays
reachable. The messages:

``drain.request`` (command to the group)
    ``hosts`` and ``pids`` (empty: every process), ``stop``, ``reply_to``
    (the command's channel), and the drain's ``batch_size``, ``interval``,
    ``deadline`` and ``reason`` when the command gives them.
``drain.started`` (a process to ``reply_to``)
    ``host``, ``pid``, ``connections`` (open when the drain starts) and
    ``deadline``.
``drain.finished`` (a process to ``reply_to``)
    ``host``, ``pid``, ``connections``, and the drain's ``closed``,
    ``still_open`` and ``elapsed``.

Other features ask the processes through the same group: a message of a
type given to :func:`add_handler` (with ``hosts`` and ``pids`` as a drain
request has them) is handed to its handler in each process it is meant for
(the ops page's, :mod:`django_realtime.ops.console.control`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from django_realtime.layers import get_channel_layer

if TYPE_CHECKING:
    from django_realtime.layers.base import ChannelLayer

__all__ = [
    "CONTROL_GROUP",
    "DrainRequest",
    "Handler",
    "Outcome",
    "add_handler",
    "control_layer",
    "is_for",
    "listen",
]

# The drain's logger: the drain reports under one name.
logger = logging.getLogger("django_realtime.ops.drain")

#: The channel layer group of the processes that obey ``manage.py drain``.
CONTROL_GROUP = "django_realtime.ops.drain"

#: The drain parameters a request may carry.
PARAMETERS = ("batch_size", "interval", "deadline", "reason")


#: Handles another control message: called with the layer and the message.
Handler = Callable[["ChannelLayer", dict[str, Any]], Awaitable[None]]

_handlers: dict[str, Handler] = {}


def add_handler(kind: str, handler: Handler) -> None:
    """Hand control messages of type ``kind`` meant for this process to ``handler``.

    The handler runs in the listening task, one message at a time: it must
    answer quickly. An exception is logged and the listening goes on.
    """
    _handlers[kind] = handler


class Outcome(Protocol):
    """What a finished drain reports to the command."""

    @property
    def closed(self) -> int: ...

    @property
    def still_open(self) -> int: ...

    @property
    def elapsed(self) -> float: ...


class DrainRequest:
    """A ``drain.request`` meant for this process.

    Attributes:
        stop: Stop the server after the drain (else accept handshakes again).
        parameters: The drain's parameters the command gave (a subset of
            ``batch_size``, ``interval``, ``deadline`` and ``reason``).
    """

    def __init__(
        self, layer: ChannelLayer, message: dict[str, Any], host: str, pid: int
    ) -> None:
        self.stop = bool(message.get("stop", True))
        self.parameters = {
            key: message[key] for key in PARAMETERS if message.get(key) is not None
        }
        self._layer = layer
        reply_to = message.get("reply_to")
        self._reply_to = reply_to if isinstance(reply_to, str) else None
        self._host = host
        self._pid = pid

    async def started(
        self, connections: int, deadline: float
    ) -> Callable[[Outcome], Awaitable[None]] | None:
        """Tell the command the drain has started; return how to tell its end.

        Returns:
            A coroutine function that sends ``drain.finished`` with an
            :class:`Outcome`, or ``None`` if the command wants no answer.
        """
        reply_to = self._reply_to
        if reply_to is None:
            return None
        about = {"host": self._host, "pid": self._pid, "connections": connections}
        started = {"type": "drain.started", **about, "deadline": deadline}
        await self._layer.send(reply_to, started)

        async def finished(outcome: Outcome) -> None:
            await self._layer.send(
                reply_to,
                {
                    "type": "drain.finished",
                    **about,
                    "closed": outcome.closed,
                    "still_open": outcome.still_open,
                    "elapsed": outcome.elapsed,
                },
            )

        return finished


def control_layer() -> ChannelLayer | None:
    """Return the default layer if it reaches other processes, else ``None``."""
    try:
        layer = get_channel_layer()
    except Exception as exc:  # A broken layer must not break the connection.
        logger.warning("`manage.py drain` cannot reach this process: %s", exc)
        return None
    if layer is None or type(layer).__name__ == "InMemoryChannelLayer":
        return None
    if "groups" not in getattr(layer, "extensions", ()):
        return None
    return layer


def is_for(message: dict[str, Any], host: str, pid: int) -> bool:
    """Return whether a ``drain.request`` ``message`` is meant for this process."""
    hosts = message.get("hosts") or []
    pids = message.get("pids") or []
    return (not hosts or host in hosts) and (not pids or pid in pids)


async def listen(
    layer: ChannelLayer, on_request: Callable[[DrainRequest], Awaitable[None]]
) -> None:
    """Join the control group, renewing it before it expires; pass requests on.

    Runs until cancelled; a failure of the layer is logged and retried
    after a second.

    Args:
        layer: A layer that reaches the command (see :func:`control_layer`).
        on_request: Called with each request meant for this process.
    """
    loop = asyncio.get_running_loop()
    # Renew well within the layer's group expiry (a day by default).
    renew = max(1.0, float(getattr(layer, "group_expiry", 86400)) / 4)
    host, pid = socket.gethostname(), os.getpid()
    channel: str | None = None
    renew_at = 0.0
    while True:
        try:
            if channel is None:
                channel = await layer.new_channel()
            if loop.time() >= renew_at:
                await layer.group_add(CONTROL_GROUP, channel)
                renew_at = loop.time() + renew
            try:
                async with asyncio.timeout_at(renew_at):
                    message = await layer.receive(channel)
            except TimeoutError:
                continue
            kind = message.get("type")
            if not is_for(message, host, pid):
                continue
            if kind == "drain.request":
                await on_request(DrainRequest(layer, message, host, pid))
            elif (handler := _handlers.get(str(kind))) is not None:
                try:
                    await handler(layer, message)
                except Exception:
                    logger.exception("Handling a %r control message failed.", kind)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning(
                "Listening for `manage.py drain` failed; retrying in 1 s.",
                exc_info=True,
            )
            await asyncio.sleep(1)  # back off before the layer is asked again
            renew_at = 0.0
