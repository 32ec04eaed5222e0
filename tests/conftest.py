"""Skip tests whose service is down, except under CI=true, where that fails."""

from __future__ import annotations

import functools
import os
import socket

import pytest

SERVICES = {"postgres": ("127.0.0.1", 5432), "redis": ("127.0.0.1", 6379)}


@functools.cache
def service_error(marker: str) -> str | None:
    host, port = SERVICES[marker]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as error:
        return f"{marker} is not reachable on {host}:{port}: {error}"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in SERVICES:
        if item.get_closest_marker(marker) is None:
            continue
        error = service_error(marker)
        if error is None:
            continue
        if os.environ.get("CI") == "true":
            pytest.fail(f"{error} (required under CI=true)")
        pytest.skip(error)
