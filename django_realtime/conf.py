"""Read django_realtime's settings, at call time and never at import time.

Options live in one dictionary setting, ``REALTIME``; a missing key takes the
default from :data:`DEFAULTS`. ``CHANNEL_LAYERS`` and ``ASGI_APPLICATION``
keep the names Channels and Django use.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

__all__ = ["DEFAULTS", "get_setting"]

DEFAULTS: dict[str, Any] = {
    # Threads that run sync consumer handlers. Handlers of one connection
    # run one at a time; handlers of different connections run in parallel
    # up to this many.
    "SYNC_THREADS": 16,
    # Close unusable and obsolete database connections around handlers, as
    # Django does around requests (see django_realtime.delivery.db).
    "CLOSE_OLD_CONNECTIONS": True,
    # Where streams keep their history (django_realtime.streams): a backend
    # and its options, as in CACHES.
    "STREAM_STORE": {"BACKEND": "django_realtime.streams.stores.MemoryHistoryStore"},
    # How much history each stream keeps: fnmatch patterns of stream names
    # to limits; the first match wins (see HistoryPolicy).
    "STREAM_HISTORY": {
        "*": {"MAX_COUNT": 1000, "MAX_BYTES": 1024 * 1024, "MAX_AGE": 3600}
    },
    # The stream outbox (django_realtime.streams.relay): inside a
    # transaction of one of DATABASES (keys of Django's DATABASES, where
    # the django_realtime_outbox table is migrated), a publication to a
    # store that cannot write in that database (Redis) is written to the
    # outbox table in the transaction and relayed to the store once it
    # commits. Rows a publisher left behind (it died after its commit) are
    # relayed by any process that serves streams, RELAY_AFTER seconds after
    # they were written, looking every INTERVAL seconds. No databases: off.
    "STREAM_OUTBOX": {"DATABASES": [], "RELAY_AFTER": 5.0, "INTERVAL": 1.0},
    # How much history one stream connection may replay (resumes and
    # catch-ups): BURST bytes at once, RATE bytes a second on average
    # (None: no limit); past it, its history reads wait.
    "STREAM_REPLAY": {"RATE": 256 * 1024, "BURST": 1024 * 1024},
    # Record Prometheus metrics (django_realtime.ops.metrics; needs the
    # prometheus-client package: pip install django-realtime-framework[metrics]).
    "METRICS": False,
    # Graceful drain (django_realtime.ops.drain): on SIGTERM or the drain command,
    # refuse new handshakes and close every WebSocket with 1012 (service
    # restart), BATCH_SIZE connections every INTERVAL seconds, then give
    # handlers until DEADLINE seconds after the start and stop. 500 every
    # 0.25 s closes 10,000 connections in 5 s, and the deadline of 25 s ends
    # the drain before Kubernetes' SIGKILL (terminationGracePeriodSeconds,
    # 30 s by default). SIGNAL: take SIGTERM over from the server and drain
    # on it (off: the signal is the server's; drain.handle_sigterm() in
    # asgi.py does the same); CONTROL: obey the drain command through the
    # default channel layer (not the in-memory one).
    "DRAIN": {
        "BATCH_SIZE": 500,
        "INTERVAL": 0.25,
        "DEADLINE": 25.0,
        "REASON": "service restart",
        "SIGNAL": False,
        "CONTROL": True,
    },
}


def get_setting(name: str) -> Any:
    """Return the ``REALTIME[name]`` setting, or its default.

    Raises:
        KeyError: ``name`` is not a django_realtime setting.
    """
    if name not in DEFAULTS:
        raise KeyError(f"Unknown django_realtime setting {name!r}.")
    options = getattr(settings, "REALTIME", None) or {}
    return options.get(name, DEFAULTS[name])
