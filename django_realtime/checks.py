"""System checks for django_realtime's configuration.

Run with ``python manage.py check`` (``--deploy`` adds the deployment
checks); ``runserver`` runs them before it starts. Every check reads
settings when it runs, never at import time, and reports odd values as
messages instead of raising. The ids:

Errors
    ``django_realtime.E001``
        ``ASGI_APPLICATION`` is missing, empty or not a dotted path string.
    ``django_realtime.E002``
        ``ASGI_APPLICATION`` cannot be imported (the import error is quoted).
    ``django_realtime.E003``
        A ``CHANNEL_LAYERS`` alias is not a dict, lacks ``BACKEND``, names a
        ``BACKEND`` that cannot be imported, has a ``CONFIG`` that is not a
        dict, or has the obsolete ``ROUTING`` key.
    ``django_realtime.E004``
        ``"django_realtime"`` is listed after ``"django.contrib.staticfiles"``
        in ``INSTALLED_APPS``, so staticfiles' ``runserver`` shadows ours.
    ``django_realtime.E005``
        ``ASGI_APPLICATION`` imports, but is not callable.
    ``django_realtime.E006``
        ``CHANNEL_LAYERS`` is not a dict.
    ``django_realtime.E007``
        ``REALTIME`` is not a dict.
    ``django_realtime.E008``
        ``REALTIME["STREAM_STORE"]`` is not ``{"BACKEND": ..., "OPTIONS":
        {...}}`` naming an importable history store, or
        ``REALTIME["STREAM_HISTORY"]`` is not a dict of stream-name patterns
        to valid limits.
    ``django_realtime.E009``
        ``REALTIME["DRAIN"]`` is not a dict of known drain options with
        valid values (a positive ``BATCH_SIZE``, ``INTERVAL`` >= 0, a
        positive ``DEADLINE``, a ``REASON`` of at most 123 UTF-8 bytes,
        boolean ``SIGNAL`` and ``CONTROL``).

Warnings
    ``django_realtime.W001``
        ``"daphne"`` is also in ``INSTALLED_APPS``; its ``runserver``
        competes with ours.
    ``django_realtime.W002``
        ``CHANNEL_LAYERS`` has aliases but no ``"default"``, which consumers
        and ``get_channel_layer()`` use unless told otherwise.
    ``django_realtime.W003``
        ``REALTIME`` has a key django_realtime does not know (a typo?).
    ``django_realtime.W004``
        ``"channels"`` is listed before ``"django_realtime"`` in
        ``INSTALLED_APPS``, so Channels' ``runworker`` shadows ours.
    ``django_realtime.W005`` (deployment only)
        The ``"default"`` channel layer is the in-memory layer (also the
        default without ``CHANNEL_LAYERS``), which cannot carry messages
        between server processes.
    ``django_realtime.W006``
        ``SESSION_ENGINE`` is the signed-cookies engine: the session lives
        in the client's cookie, which a WebSocket cannot set after its
        handshake, so ``login()``, ``logout()`` and session changes made by
        a consumer are not persisted.
    ``django_realtime.W007``
        ``ALLOWED_HOSTS`` contains ``"*"`` and a WebSocket route of
        ``ASGI_APPLICATION`` reaches a consumer through no origin check.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from django_realtime.conf import DEFAULTS
from django_realtime.layers.registry import EMBEDDED_CHANNEL_LAYERS
from django_realtime.security import unguarded_websocket_routes

__all__ = [
    "TAG",
    "check_asgi_application",
    "check_channel_layers",
    "check_drain",
    "check_in_memory_layer_in_production",
    "check_installed_apps",
    "check_realtime_setting",
    "check_session_engine",
    "check_streams",
    "check_websocket_origin",
]

TAG = "realtime"
"""The tag of every django_realtime check: ``manage.py check --tag realtime``."""

_APP = "django_realtime"
_STATICFILES = "django.contrib.staticfiles"
_IN_MEMORY_LAYER = "InMemoryChannelLayer"
_SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"


@register(TAG)
def check_asgi_application(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check that ``ASGI_APPLICATION`` names an importable ASGI application."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not isinstance(path, str) or "." not in path.strip(". "):
        arrived = "is not set" if path is None else f"is {path!r}"
        project = (os.environ.get("DJANGO_SETTINGS_MODULE") or "mysite").split(".")[0]
        return [
            Error(
                "ASGI_APPLICATION must be the dotted path of your ASGI "
                f"application, but it {arrived}.",
                hint=f"Set ASGI_APPLICATION = '{project}.asgi.application' and "
                f"define `application` in {project}/asgi.py.",
                id="django_realtime.E001",
            )
        ]
    try:
        application = import_string(path)
    except Exception as exc:  # Any failure while importing user code.
        return [
            Error(
                f"ASGI_APPLICATION {path!r} cannot be imported: "
                f"{type(exc).__name__}: {exc}",
                hint="Check the dotted path and that the module imports cleanly.",
                id="django_realtime.E002",
            )
        ]
    if not callable(application):
        return [
            Error(
                f"ASGI_APPLICATION {path!r} must be an ASGI application "
                f"(a callable), got {type(application).__name__}.",
                hint=(
                    "Point ASGI_APPLICATION at the application object, such as "
                    "a ProtocolTypeRouter, not at its module."
                ),
                id="django_realtime.E005",
            )
        ]
    return []


@register(TAG)
def check_channel_layers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the shape of ``CHANNEL_LAYERS`` and that every backend imports."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        return []
    if not isinstance(layers, dict):
        return [
            Error(
                "CHANNEL_LAYERS must be a dict of alias -> layer settings, got "
                f"{type(layers).__name__}.",
                hint=(
                    "CHANNEL_LAYERS = {'default': {'BACKEND': "
                    "'django_realtime.layers.InMemoryChannelLayer'}}"
                ),
                id="django_realtime.E006",
            )
        ]
    messages: list[CheckMessage] = []
    for alias, layer in layers.items():
        messages.extend(_check_layer(alias, layer))
    if layers and "default" not in layers:
        messages.append(
            Warning(
                "CHANNEL_LAYERS has no 'default' alias (it has "
                f"{', '.join(map(repr, layers))}); consumers and "
                "get_channel_layer() without an alias will have no layer.",
                hint="Rename one alias to 'default', or add a 'default' alias.",
                id="django_realtime.W002",
            )
        )
    return messages


def _check_layer(alias: object, layer: object) -> list[CheckMessage]:
    """Return the E003 errors for one ``CHANNEL_LAYERS`` entry."""

    def error(problem: str, hint: str) -> Error:
        return Error(
            f"CHANNEL_LAYERS[{alias!r}] {problem}",
            hint=hint,
            id="django_realtime.E003",
        )

    if not isinstance(layer, dict):
        return [
            error(
                f"must be a dict with a 'BACKEND' key, got {type(layer).__name__}.",
                "Write {'BACKEND': 'dotted.path.to.LayerClass', 'CONFIG': {...}}.",
            )
        ]
    messages: list[CheckMessage] = []
    backend = layer.get("BACKEND")
    if not isinstance(backend, str) or not backend:
        messages.append(
            error(
                f"must have a 'BACKEND' dotted path, got {backend!r}.",
                "Use 'django_realtime.layers.InMemoryChannelLayer' or "
                "'channels_redis.core.RedisChannelLayer'.",
            )
        )
    else:
        try:
            import_string(backend)
        except Exception as exc:  # Any failure while importing the backend.
            messages.append(
                error(
                    f"has BACKEND {backend!r}, which cannot be imported: "
                    f"{type(exc).__name__}: {exc}",
                    "Check the dotted path and that its package is installed "
                    "(channels_redis: `pip install django-realtime-framework[redis]`).",
                )
            )
    if "ROUTING" in layer:
        messages.append(
            error(
                "has a 'ROUTING' key, which channel layers no longer use.",
                "Remove 'ROUTING'; route with ASGI_APPLICATION instead.",
            )
        )
    config = layer.get("CONFIG", {})
    if not isinstance(config, dict):
        messages.append(
            error(
                f"has CONFIG of type {type(config).__name__}; expected a dict "
                "of keyword arguments for the backend.",
                "Write 'CONFIG': {'hosts': [...]} or leave CONFIG out.",
            )
        )
    return messages


@register(TAG, Tags.compatibility)
def check_installed_apps(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check that other apps' management commands do not shadow ours.

    Django takes each command from the first app in ``INSTALLED_APPS`` that
    has it: the order decides whose ``runserver`` and ``runworker`` run.
    """
    names = [config.name for config in apps.get_app_configs()]
    if _APP not in names:
        return []
    position = names.index(_APP)
    messages: list[CheckMessage] = []
    if _STATICFILES in names and names.index(_STATICFILES) < position:
        messages.append(
            Error(
                f"'{_APP}' is listed after '{_STATICFILES}' in INSTALLED_APPS, "
                "so staticfiles' WSGI runserver shadows the ASGI one.",
                hint=f"Move '{_APP}' above '{_STATICFILES}' in INSTALLED_APPS.",
                id="django_realtime.E004",
            )
        )
    if "daphne" in names:
        winner = "daphne's" if names.index("daphne") < position else "ours"
        messages.append(
            Warning(
                "'daphne' and 'django_realtime' are both in INSTALLED_APPS and "
                f"both provide runserver; {winner} runs now.",
                hint=(
                    "Remove 'daphne' from INSTALLED_APPS: django_realtime's "
                    "runserver already serves ASGI through daphne."
                ),
                id="django_realtime.W001",
            )
        )
    if "channels" in names and names.index("channels") < position:
        messages.append(
            Warning(
                f"'channels' is listed before '{_APP}' in INSTALLED_APPS, so "
                "Channels' runworker shadows django_realtime's.",
                hint=f"Move '{_APP}' above 'channels', or remove 'channels'.",
                id="django_realtime.W004",
            )
        )
    return messages


@register(TAG)
def check_realtime_setting(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check that ``REALTIME`` is a dict of known options."""
    options = getattr(settings, "REALTIME", None)
    if options is None:
        return []
    if not isinstance(options, dict):
        return [
            Error(
                "REALTIME must be a dict of django_realtime options, got "
                f"{type(options).__name__}.",
                hint=f"Known options: {', '.join(sorted(DEFAULTS))}.",
                id="django_realtime.E007",
            )
        ]
    return [
        Warning(
            f"REALTIME has an unknown option {key!r}; it is ignored.",
            hint=f"Known options: {', '.join(sorted(DEFAULTS))}.",
            id="django_realtime.W003",
        )
        for key in options
        if key not in DEFAULTS
    ]


@register(TAG)
def check_streams(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the history store and history limits of streams."""
    options = getattr(settings, "REALTIME", None)
    if not isinstance(options, dict):
        return []
    problem = _stream_settings_problem(
        options.get("STREAM_STORE", DEFAULTS["STREAM_STORE"]),
        options.get("STREAM_HISTORY", DEFAULTS["STREAM_HISTORY"]),
    )
    if problem is None:
        return []
    return [
        Error(
            problem,
            hint="See the STREAM_STORE and STREAM_HISTORY settings in the docs.",
            id="django_realtime.E008",
        )
    ]


def _stream_settings_problem(store: object, history: object) -> str | None:
    from django_realtime.streams.stores.base import HistoryStore, PolicyTable

    if not isinstance(store, Mapping) or not isinstance(store.get("BACKEND"), str):
        return (
            "REALTIME['STREAM_STORE'] must be a dict with a 'BACKEND' dotted "
            f"path, got {store!r}."
        )
    if not isinstance(store.get("OPTIONS", {}), Mapping):
        options = store["OPTIONS"]
        return f"REALTIME['STREAM_STORE']['OPTIONS'] must be a dict, got {options!r}."
    try:
        backend = import_string(store["BACKEND"])
    except ImportError as exc:
        return f"REALTIME['STREAM_STORE']['BACKEND'] cannot be imported: {exc}"
    if not (isinstance(backend, type) and issubclass(backend, HistoryStore)):
        return (
            "REALTIME['STREAM_STORE']['BACKEND'] must name a HistoryStore "
            f"subclass, got {store['BACKEND']!r}."
        )
    if not isinstance(history, Mapping) or not all(
        isinstance(limits, Mapping) for limits in history.values()
    ):
        return (
            "REALTIME['STREAM_HISTORY'] must map stream-name patterns to dicts "
            f"of limits, got {history!r}."
        )
    try:
        PolicyTable(history)
    except (TypeError, ValueError) as exc:
        return f"REALTIME['STREAM_HISTORY'] has invalid limits: {exc}"
    return None


@register(TAG)
def check_drain(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Check the options of the graceful drain, ``REALTIME["DRAIN"]``."""
    options = getattr(settings, "REALTIME", None)
    if not isinstance(options, dict) or "DRAIN" not in options:
        return []
    problem = _drain_settings_problem(options["DRAIN"])
    if problem is None:
        return []
    return [
        Error(
            problem,
            hint=(
                "Defaults: REALTIME['DRAIN'] = "
                f"{DEFAULTS['DRAIN']!r}; give only the keys you change."
            ),
            id="django_realtime.E009",
        )
    ]


def _drain_settings_problem(drain: object) -> str | None:
    if not isinstance(drain, Mapping):
        return f"REALTIME['DRAIN'] must be a dict, got {type(drain).__name__}."
    known = DEFAULTS["DRAIN"]
    for key in drain:
        if key not in known:
            return (
                f"REALTIME['DRAIN'] has an unknown key {key!r}; expected some "
                f"of {', '.join(known)}."
            )
    expected: dict[str, tuple[str, Any]] = {
        # type() rather than isinstance(): True and False are not numbers here.
        "BATCH_SIZE": ("a positive integer", lambda v: type(v) is int and v > 0),
        "INTERVAL": ("a number of seconds >= 0", lambda v: _number(v) and v >= 0),
        "DEADLINE": ("a number of seconds > 0", lambda v: _number(v) and v > 0),
        "REASON": (
            "a string of at most 123 UTF-8 bytes",
            lambda v: isinstance(v, str) and len(v.encode()) <= 123,
        ),
        "SIGNAL": ("True or False", lambda v: isinstance(v, bool)),
        "CONTROL": ("True or False", lambda v: isinstance(v, bool)),
    }
    for key, (what, valid) in expected.items():
        if key in drain and not valid(drain[key]):
            return f"REALTIME['DRAIN'][{key!r}] must be {what}, got {drain[key]!r}."
    return None


def _number(value: object) -> bool:
    return type(value) in (int, float)


@register(TAG, deploy=True)
def check_in_memory_layer_in_production(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when the deployed default channel layer lives in one process."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        layers = EMBEDDED_CHANNEL_LAYERS
    if not isinstance(layers, Mapping):
        return []
    default = layers.get("default")
    if not isinstance(default, Mapping):
        return []
    backend = default.get("BACKEND")
    if not isinstance(backend, str) or backend.rpartition(".")[2] != _IN_MEMORY_LAYER:
        return []
    return [
        Warning(
            f"The 'default' channel layer is {backend!r}, which keeps messages "
            "inside one process: group messages and runworker tasks will not "
            "reach other server processes.",
            hint=(
                "Use 'channels_redis.core.RedisChannelLayer' when you run more "
                "than one process."
            ),
            id="django_realtime.W005",
        )
    ]


@register(TAG)
def check_session_engine(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when sessions live in cookies, which a WebSocket cannot update."""
    if getattr(settings, "SESSION_ENGINE", None) != _SIGNED_COOKIES:
        return []
    return [
        Warning(
            "SESSION_ENGINE is signed_cookies: sessions cannot be saved over a "
            "WebSocket (login/logout/session changes in a consumer are not "
            "persisted).",
            hint=(
                "Use a server-side engine such as "
                "'django.contrib.sessions.backends.db' or 'cached_db' if "
                "consumers change the session."
            ),
            id="django_realtime.W006",
        )
    ]


@register(TAG, Tags.security)
def check_websocket_origin(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when any host is allowed and WebSocket routes check no origin."""
    path = getattr(settings, "ASGI_APPLICATION", None)
    if "*" not in getattr(settings, "ALLOWED_HOSTS", ()) or not path:
        return []
    try:
        routes = unguarded_websocket_routes(import_string(path))
    except Exception:  # E001/E002 report an application that cannot load.
        return []
    if not routes:
        return []
    return [
        Warning(
            "ALLOWED_HOSTS contains '*' and these WebSocket routes of "
            f"ASGI_APPLICATION check no Origin: {', '.join(routes)}. Any web "
            "page can open them with its visitors' cookies.",
            hint="Wrap the 'websocket' application in AllowedHostsOriginValidator.",
            id="django_realtime.W007",
        )
    ]
