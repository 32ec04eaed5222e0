"""Two server processes (uvicorn and daphne) sharing one Redis history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess

APPLICATION = "tests.e2e.streams_http.app:application"


@pytest.fixture
def redis_prefix() -> str:
    return f"streams-http-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server_env(redis_prefix: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.streams_http.settings",
        "STREAMS_HTTP_PREFIX": redis_prefix,
    }


@pytest.fixture
def servers(
    server_env: dict[str, str], tmp_path: Path
) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for kind in ("uvicorn", "daphne"):
            started.append(
                ServerProcess(kind, APPLICATION, server_env, tmp_path / f"{kind}.log")
            )
        yield started
    finally:
        for server in started:
            server.kill()


def base(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"
