"""Check the Redis layer's options and find its dependencies.

Pure functions of the arguments given to
:class:`~django_realtime.layers.redis.RedisChannelLayer`: each returns the
checked value, or raises with what was expected and what arrived.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

#: The Redis server of a layer configured without ``hosts``.
DEFAULT_HOST = "redis://127.0.0.1:6379"

_INSTALL = "python -m pip install 'django-realtime-framework[redis]'"
_CLIENT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def seconds(value: object, name: str) -> float:
    """Return ``value``, a positive number of seconds.

    Raises:
        TypeError: ``value`` is not a number (``bool`` is not one).
        ValueError: ``value`` is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")
    return value


def one_host(
    hosts: Sequence[str | Mapping[str, Any]] | None,
) -> tuple[str, dict[str, Any]]:
    """Return the URL and redis-py keyword arguments of the one host.

    Raises:
        TypeError: ``hosts`` is not a list, or its host is neither a URL nor
            a dict with an ``"address"`` URL.
        ValueError: ``hosts`` does not list exactly one host.
    """
    if hosts is None:
        hosts = [DEFAULT_HOST]
    if isinstance(hosts, str | bytes) or not isinstance(hosts, Sequence):
        raise TypeError(f"hosts must be a list of one Redis URL, got {hosts!r}.")
    if len(hosts) != 1:
        raise ValueError(
            "RedisChannelLayer uses one Redis server; hosts must list exactly "
            f"one, got {len(hosts)}."
        )
    host: object = hosts[0]
    kwargs: dict[str, Any] = {}
    if isinstance(host, Mapping):
        kwargs = dict(host)
        host = kwargs.pop("address", None)
    if not isinstance(host, str) or not host:
        raise TypeError(
            "Each host must be a Redis URL or a dict with an 'address' URL, "
            f"got {hosts[0]!r}."
        )
    # The pub/sub reader reads RESP2 arrays; bytes keep msgpack payloads whole.
    kwargs.update(protocol=2, decode_responses=False)
    # redis-py 6+ defaults to 5 s, enforced on Python 3.11 with
    # asyncio.wait_for(), which can swallow a task's cancellation (a consumer
    # that never stops, a loop that never shuts down). The layer bounds its
    # own waits instead; set socket_timeout in the host dict to have one.
    kwargs.setdefault("socket_timeout", None)
    return host, kwargs


def describe(url: str) -> str:
    """Return ``url`` without credentials, for messages."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"{parts.scheme}://{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def client_name(prefix: str, process_id: str) -> str:
    """Return the ``CLIENT SETNAME`` of a layer's pub/sub connection."""
    name = _CLIENT_NAME_UNSAFE.sub("_", f"{prefix}-{process_id}")
    return f"{name}-pubsub"


def import_serialiser() -> tuple[Callable[[Any], Any], Callable[[Any], bytes]]:
    """Check that redis-py is there; return msgpack's decoder and encoder.

    Raises:
        ImportError: redis-py or msgpack is not installed; the message says
            how to install them.
    """
    try:
        import msgpack
        import redis.asyncio  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "RedisChannelLayer needs redis-py and msgpack, which are not "
            f"installed ({error}). Install them with: {_INSTALL}"
        ) from error
    # Keys other than strings are allowed: payloads come from our processes.
    return (
        functools.partial(msgpack.unpackb, raw=False, strict_map_key=False),
        functools.partial(msgpack.packb, use_bin_type=True),
    )
