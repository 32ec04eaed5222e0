"""Prometheus metrics of WebSocket connections, handlers and channel layers.

Turned on with ``REALTIME = {"METRICS": True}`` (and the ``prometheus-client``
package: ``pip install django-realtime-framework[metrics]``); route
:func:`metrics_view` in the project's ``urls.py`` for Prometheus to scrape::

    from django_realtime.ops.metrics import metrics_view

    urlpatterns = [path("metrics", metrics_view)]

Several server processes (``uvicorn --workers 4``, several daphnes behind a
balancer on one host) share their metrics through prometheus-client's
multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in
every process's environment, and any process's view answers for all.

The hot path stays cheap: a frame or a send adds to plain integers on
:data:`counts`, which a timer pushes into the Prometheus counters once a
second (and the view before it answers); only the two latency histograms
are observed as they happen. Modules that keep counters of their own (the
connection limits, the streams, the channel layer registry) register a
source with :func:`add_source`, pushed the same way: this module is a sink
and imports none of them. The list of metrics, with their labels, is in
``docs/topics/observability.rst``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

__all__ = [
    "Counts",
    "Source",
    "add_source",
    "counts",
    "enable",
    "flush",
    "metrics_view",
]

logger = logging.getLogger(__name__)

# Seconds between two pushes of the plain counters into Prometheus.
FLUSH_INTERVAL = 1.0

# Latency buckets, in seconds: handlers and layer sends take from tens of
# microseconds (an echo) to seconds (a slow query).
_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

HANDSHAKE_OUTCOMES = (
    "accepted",
    "refused",
    "failed",
    "over_capacity",
    "timeout",
)


class Counts:
    """This process's plain counters, added to on the hot path.

    Attributes:
        frames_in: WebSocket messages received from clients.
        bytes_in: Their size in bytes (UTF-8 for text).
        frames_out: WebSocket messages sent to clients.
        bytes_out: Their size in bytes.
        opened: WebSocket connections accepted.
        closed: Accepted connections that have ended.
        refused: Handshakes the application refused (close before accept).
        failed: Handshakes whose ``connect()`` raised.
    """

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closed",
        "failed",
        "frames_in",
        "frames_out",
        "opened",
        "refused",
    )

    def __init__(self) -> None:
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.opened = 0
        self.closed = 0
        self.refused = 0
        self.failed = 0


#: The process's counters; ``None`` while metrics are off (the hot path asks).
counts: Counts | None = None

_metrics: _Metrics | None = None


def frame_size(text: str | None, data: bytes | None) -> int:
    """Return the wire size of a frame's text or bytes."""
    if text is not None:
        # isascii() is O(1) in CPython: only non-ASCII text is encoded.
        return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))
    return len(data) if data is not None else 0


class _Metrics:
    """The Prometheus objects, and what was last pushed into them."""

    def __init__(self) -> None:
        try:
            from prometheus_client import Counter, Gauge, Histogram
        except ImportError as exc:
            raise ImproperlyConfigured(
                "REALTIME['METRICS'] needs the prometheus-client package: "
                "pip install django-realtime-framework[metrics]."
            ) from exc
        self.connections_open = Gauge(
            "realtime_connections_open",
            "WebSocket connections open.",
            multiprocess_mode="livesum",
        )
        self.handshakes = Counter(
            "realtime_handshakes",
            "WebSocket handshakes, by outcome.",
            ["outcome"],
        )
        self.messages = Counter(
            "realtime_messages",
            "WebSocket messages, by direction (in: from clients).",
            ["direction"],
        )
        self.bytes = Counter(
            "realtime_message_bytes",
            "Bytes of WebSocket messages, by direction.",
            ["direction"],
        )
        self.handler_seconds = Histogram(
            "realtime_handler_duration_seconds",
            "Time a consumer handler takes, held sends included.",
            ["consumer", "handler"],
            buckets=_BUCKETS,
        )
        self.layer_send_seconds = Histogram(
            "realtime_layer_send_duration_seconds",
            "Time a channel layer send or group_send takes.",
            ["layer", "operation"],
            buckets=_BUCKETS,
        )
        self.capacity_drops = Counter(
            "realtime_layer_capacity_drops",
            "Messages a channel layer dropped because a channel was full.",
            ["layer"],
        )
        self.slow_clients = Counter(
            "realtime_slow_clients",
            "Slow-client events, by action (stream queue dropped for a "
            "catch-up, connection closed 4008).",
            ["action"],
        )
        self.rate_limited = Counter(
            "realtime_rate_limited",
            "Connections closed or messages dropped over their rate.",
            ["action"],
        )
        # Children bound once: labels() costs more than the increment.
        self._handshake = {o: self.handshakes.labels(o) for o in HANDSHAKE_OUTCOMES}
        self._in = (self.messages.labels("in"), self.bytes.labels("in"))
        self._out = (self.messages.labels("out"), self.bytes.labels("out"))
        self._handlers: dict[tuple[type, str], Any] = {}
        self._pushed: dict[Any, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handler_child(self, consumer: type, handler: str) -> Any:
        """Return the histogram child of ``consumer.handler``."""
        key = (consumer, handler)
        try:
            return self._handlers[key]
        except KeyError:
            name = f"{consumer.__module__}.{consumer.__qualname__}"
            child = self._handlers[key] = self.handler_seconds.labels(name, handler)
            return child

    def _push(self, child: Any, total: int) -> None:
        """Add to ``child`` what ``total`` grew by since the last push."""
        last = self._pushed.get(child, 0)
        if total > last:
            child.inc(total - last)
        self._pushed[child] = total

    def flush(self) -> None:
        """Push every plain counter of this process into Prometheus."""

        own = counts
        if own is not None:
            self._push(self._in[0], own.frames_in)
            self._push(self._in[1], own.bytes_in)
            self._push(self._out[0], own.frames_out)
            self._push(self._out[1], own.bytes_out)
            self._push(self._handshake["accepted"], own.opened)
            self._push(self._handshake["refused"], own.refused)
            self._push(self._handshake["failed"], own.failed)
            self.connections_open.set(own.opened - own.closed)
        families = {
            "handshakes": self.handshakes,
            "rate_limited": self.rate_limited,
            "slow_clients": self.slow_clients,
            "capacity_drops": self.capacity_drops,
        }
        for source in _sources:
            for family, label, total in source():
                self._push(families[family].labels(label), total)

    def start_timer(self) -> None:
        """Push once a second on the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._timer is not None:
            return
        self._loop = loop
        self._timer = loop.call_later(FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        try:
            self.flush()
        except Exception:
            logger.exception("Could not push django_realtime's metrics.")
        if self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)


#: A source yields ``(family, label, total)``: a running total to push into
#: the counter ``family`` (``"handshakes"``, ``"rate_limited"``,
#: ``"slow_clients"`` or ``"capacity_drops"``) under ``label``.
Source = Callable[[], Iterable[tuple[str, str, int]]]

_sources: list[Source] = []


def add_source(source: Source) -> None:
    """Push the totals ``source`` yields at every flush (idempotent)."""
    if source not in _sources:
        _sources.append(source)


def enable() -> None:
    """Turn metrics on in this process (idempotent; ``AppConfig.ready`` calls it).

    Raises:
        ImproperlyConfigured: prometheus-client is not installed.
    """
    global _metrics, counts
    if _metrics is None:
        _metrics = _Metrics()
        counts = Counts()


def active() -> _Metrics | None:
    """Return the Prometheus objects, or ``None`` while metrics are off."""
    return _metrics


def start_timer() -> None:
    """Push the counters once a second on the running loop."""
    if _metrics is not None:
        _metrics.start_timer()


def flush() -> None:
    """Push this process's counters into Prometheus now (no-op when off)."""
    if _metrics is not None:
        _metrics.flush()


def observe_handler(consumer: type, handler: str, seconds: float) -> None:
    """Record one handler call of ``consumer`` taking ``seconds``."""
    if _metrics is not None:
        _metrics.handler_child(consumer, handler).observe(seconds)


def instrument_layer(layer: Any, alias: str) -> None:
    """Time ``layer``'s ``send`` and ``group_send`` (any layer class).

    The instance's two methods are replaced by timed wrappers; a
    ``ChannelFull`` a send raises counts as a capacity drop and goes on.
    """
    metrics = _metrics
    if metrics is None:
        return
    for operation in ("send", "group_send"):
        method = getattr(layer, operation, None)
        if method is None:
            continue
        child = metrics.layer_send_seconds.labels(alias, operation)
        drops = metrics.capacity_drops.labels(alias)
        setattr(layer, operation, _timed(method, child, drops))


def _timed(
    method: Callable[..., Awaitable[Any]], child: Any, drops: Any
) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            if type(exc).__name__ == "ChannelFull":
                drops.inc()
            raise
        finally:
            child.observe(time.perf_counter() - started)

    timed.__wrapped__ = method  # type: ignore[attr-defined]
    return timed


def _registry() -> Any:
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Answer Prometheus's scrape: every metric of this process (or all of them).

    With ``PROMETHEUS_MULTIPROC_DIR`` set, the answer adds up every process
    that shares the directory. While metrics are off, the answer is 404.
    """
    if _metrics is None:
        fix = "set REALTIME['METRICS'] = True"
        if importlib.util.find_spec("prometheus_client") is None:
            fix = (
                "install prometheus-client (python -m pip install "
                "'django-realtime-framework[metrics]'), then " + fix
            )
        return HttpResponse(
            f"Metrics are off: {fix}.\n",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    _metrics.flush()
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
