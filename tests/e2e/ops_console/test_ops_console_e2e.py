"""The ops page over two real server processes sharing one channel layer.

Two uvicorn processes of one project share the SQLite file (the embedded
default) or Redis; the page served by one lists the connections of both,
closes a connection the other one holds, and drains the other one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.servers import ROOT, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

APP = "tests.e2e.ops_console.app:application"
PAGE = "/admin/django_realtime/realtimeops/"
#: Any 32 characters: the CSRF cookie and the form's token, unmasked.
CSRF = "a" * 32


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def environment(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Return the servers' environment, on one SQLite file or on Redis."""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.ops_console.settings",
        "OPS_TEST_DIR": str(tmp_path),
    }
    prefix = f"ops-test-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        env["OPS_TEST_REDIS_PREFIX"] = prefix
    yield env
    if request.param == "redis":
        import redis

        client = redis.Redis()
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def sessions(env: dict[str, str]) -> tuple[str, str]:
    """Migrate; return the session keys of the operator and of alice."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.ops_console.setup_db"],
        cwd=ROOT,
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    operator, alice = done.stdout.split()
    return operator, alice


def _base_env() -> dict[str, str]:
    return dict(os.environ)


def http(
    server: ServerProcess, path: str, session: str, form: dict[str, str] | None = None
) -> tuple[int, str]:
    """GET ``path`` (POST ``form``) as the holder of ``session``; no redirects."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    data = None
    if form is not None:
        data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": CSRF}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=data,
        headers={"Cookie": f"sessionid={session}; csrftoken={CSRF}"},
    )
    opener = urllib.request.build_opener(Stay, urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def survey(server: ServerProcess, session: str, processes: int) -> dict[str, Any]:
    """Return the page's JSON once ``processes`` processes answer it."""
    for _ in range(20):
        status, body = await asyncio.to_thread(
            http, server, PAGE + "data.json", session
        )
        assert status == 200, body
        data: dict[str, Any] = json.loads(body)
        if len(data["processes"]) >= processes:
            return data
        await asyncio.sleep(0.25)  # the other process joins the control group
    raise AssertionError(f"Expected {processes} processes to answer, got {data}.")


async def echo(server: ServerProcess, session: str | None = None) -> ClientConnection:
    headers = {"Cookie": f"sessionid={session}"} if session else None
    ws = await connect(server.url("/ws/echo/"), proxy=None, additional_headers=headers)
    await ws.send("hello")
    assert await asyncio.wait_for(ws.recv(), 5) == "hello"
    return ws


async def test_one_page_lists_both_processes_and_acts_on_the_other(
    environment: dict[str, str], tmp_path: Path
) -> None:
    operator, alice = await asyncio.to_thread(sessions, environment)
    first = ServerProcess("uvicorn", APP, environment, tmp_path / "first.log")
    second = ServerProcess("uvicorn", APP, environment, tmp_path / "second.log")
    try:
        on_first = await echo(first, alice)
        kept = await echo(second)
        target = await echo(second)

        data = await survey(first, operator, 2)

        here, other = data["processes"]
        assert here["pid"] == first.process.pid
        assert other["pid"] == second.process.pid
        assert [(c["user"], c["path"]) for c in here["connections"]] == [
            ("alice (#2)", "/ws/echo/")
        ]
        assert [c["frames_in"] for c in other["connections"]] == [1, 1]
        status, page = await asyncio.to_thread(http, first, PAGE, operator)
        assert status == 200
        other_name = f"{other['host']}:{other['pid']}"
        number = other["connections"][1]["id"]
        assert f'data-connection="{other_name}/{number}"' in page

        status, _ = await asyncio.to_thread(
            http,
            first,
            PAGE + "close/",
            operator,
            {"process": other_name, "connection": str(number)},
        )

        assert status == 302
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(target.recv(), 5)
        assert (target.close_code, target.close_reason) == (
            1008,
            "closed by an operator",
        )
        await kept.send("still here")
        assert await asyncio.wait_for(kept.recv(), 5) == "still here"
        await on_first.send("here too")
        assert await asyncio.wait_for(on_first.recv(), 5) == "here too"
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            rows = db.execute(
                "SELECT object_id, change_message FROM django_admin_log"
            ).fetchall()
        assert rows == [
            (
                f"{other_name}:{number}",
                "Closed the websocket connection of anonymous to /ws/echo/.",
            )
        ]
        after = await survey(first, operator, 2)
        assert len(after["processes"][1]["connections"]) == 1

        status, _ = await asyncio.to_thread(
            http, first, PAGE + "drain/", operator, {"process": other_name}
        )

        assert status == 302
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(kept.recv(), 10)
        assert kept.close_code == 1012
        await on_first.send("not drained")
        assert await asyncio.wait_for(on_first.recv(), 5) == "not drained"
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            [(message,)] = db.execute(
                "SELECT change_message FROM django_admin_log WHERE object_id = ?",
                (other_name,),
            ).fetchall()
        assert message == "Drained (1 connections open; then accept connections again)."
        await on_first.close()
    finally:
        first.kill()
        second.kill()
