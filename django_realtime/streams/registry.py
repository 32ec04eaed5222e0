"""The process's history store, built from the ``REALTIME`` settings.

``REALTIME["STREAM_STORE"]`` names the store as ``CACHES`` names a cache
backend (``BACKEND`` and ``OPTIONS``); ``REALTIME["STREAM_HISTORY"]`` maps
stream-name patterns to history limits. The store is built on first use and
built again after ``override_settings`` changes ``REALTIME``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from django_realtime.conf import get_setting
from django_realtime.streams.stores.base import HistoryStore, PolicyTable

__all__ = ["get_stream_store", "set_stream_store"]

_store: HistoryStore | None = None


def build_stream_store() -> HistoryStore:
    """Build the store the settings describe.

    Raises:
        ImproperlyConfigured: the settings do not describe a usable store.
    """
    config = get_setting("STREAM_STORE")
    history = get_setting("STREAM_HISTORY")
    try:
        backend = import_string(config["BACKEND"])
        policies = PolicyTable(history)
        options: dict[str, Any] = dict(config.get("OPTIONS", {}))
    except (ImportError, KeyError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"REALTIME['STREAM_STORE'] or ['STREAM_HISTORY'] is not usable: {exc}"
        ) from exc
    if not (isinstance(backend, type) and issubclass(backend, HistoryStore)):
        raise ImproperlyConfigured(
            f"REALTIME['STREAM_STORE']['BACKEND'] must name a HistoryStore "
            f"subclass, got {config['BACKEND']!r}."
        )
    return backend(policies=policies, **options)


def get_stream_store() -> HistoryStore:
    """Return the process's history store, building it on first use."""
    global _store
    if _store is None:
        _store = build_stream_store()
    return _store


def set_stream_store(store: HistoryStore | None) -> HistoryStore | None:
    """Use ``store`` from now on (``None``: build from settings); return the old one."""
    global _store
    old, _store = _store, store
    return old


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        set_stream_store(None)


setting_changed.connect(_on_setting_changed)
