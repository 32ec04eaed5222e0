"""Tests for the pytest plugin, each running a real pytest in a subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_realtime.layers.base import ChannelLayer
from django_realtime.testing import LiveServer
from django_realtime.testing.pytest_plugin import CommunicatorFactory

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.e2e


def plugin_args() -> list[str]:
    """Load the plugin by hand unless the installed entry point already does."""
    installed = any(
        point.name == "django_realtime" for point in entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "django_realtime.testing.pytest_plugin"]


def inner_settings(directory: Path) -> str:
    """Return settings whose test database is a file in ``directory``."""
    return textwrap.dedent(
        f"""
        from tests.settings import *  # noqa: F403

        DATABASES = {{
            "default": {{
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": {str(directory / "dev.sqlite3")!r},
                "TEST": {{"NAME": {str(directory / "test.sqlite3")!r}}},
            }}
        }}
        ASGI_APPLICATION = "tests.integration.testing.no_such_module.application"
        """
    )


@pytest.fixture
def inner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """Prepare a project whose test database is a file in the temporary dir."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makepyfile(inner_settings=inner_settings(pytester.path))
    return pytester


def run(
    pytester: pytest.Pytester, *args: str, settings: str = "inner_settings"
) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        *plugin_args(),
        f"--ds={settings}",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
        *args,
        timeout=120,
    )


def test_loading_the_plugin_imports_nothing_from_django() -> None:
    code = (
        "import sys, django_realtime.testing.pytest_plugin;"
        "print(sorted(m for m in sys.modules if m.startswith('django')))"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=REPO,
    )

    assert completed.stdout.strip() == (
        "['django_realtime', 'django_realtime.testing', "
        "'django_realtime.testing.pytest_plugin']"
    )


# The inner tests of the fixtures that need no server, run in one session.
FIXTURE_TESTS = {
    "test_left_open.py": """
        events = []

        async def app(scope, receive, send):
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            events.append(message)

        async def test_leaves_the_connection_open(websocket_communicator):
            communicator = websocket_communicator(app, "/ws/")
            assert await communicator.connect() == (True, None)

        def test_the_application_was_told_at_teardown():
            assert events == [{"type": "websocket.disconnect", "code": 1000}]
        """,
    "test_crash.py": """
        async def app(scope, receive, send):
            await receive()
            await send({"type": "websocket.accept"})
            await receive()
            raise LookupError("crashed on disconnect")

        async def test_leaves_the_connection_open(websocket_communicator):
            communicator = websocket_communicator(app)
            await communicator.connect()
        """,
    "test_flushed.py": """
        import asyncio

        import pytest

        async def test_sends(channel_layer):
            await channel_layer.send("inbox", {"type": "hello"})
            assert await channel_layer.receive("inbox") == {"type": "hello"}
            await channel_layer.send("inbox", {"type": "left behind"})

        async def test_finds_nothing_left(channel_layer):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await channel_layer.receive("inbox")

        def test_works_in_sync_tests(channel_layer):
            assert hasattr(channel_layer, "group_send")
        """,
}

_REPORTED = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+?)(?: - |$)")


@dataclass
class InnerRun:
    """What one inner pytest session reported, test file by test file."""

    output: str
    reports: list[tuple[str, str]]

    def outcomes(self, file: str) -> dict[str, int]:
        """Count the reports of ``file``'s tests by outcome (lowercase)."""
        return dict(
            Counter(
                status.lower() + ("s" if status == "ERROR" else "")
                for status, nodeid in self.reports
                if nodeid.split("::")[0] == file
            )
        )


@pytest.fixture(scope="module")
def fixture_tests(tmp_path_factory: pytest.TempPathFactory) -> InnerRun:
    """Run :data:`FIXTURE_TESTS` in one pytest subprocess, set up as ``inner``."""
    directory = tmp_path_factory.mktemp("fixture_tests")
    (directory / "inner_settings.py").write_text(inner_settings(directory))
    for name, source in FIXTURE_TESTS.items():
        (directory / name).write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            *plugin_args(),
            "--ds=inner_settings",
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-W",
            "error",
            "-rA",
            *FIXTURE_TESTS,
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = completed.stdout + completed.stderr
    reports = [
        (match[1], match[2])
        for line in output.splitlines()
        if (match := _REPORTED.match(line))
    ]
    return InnerRun(output, reports)


def test_websocket_communicator_disconnects_what_the_test_left_open(
    fixture_tests: InnerRun,
) -> None:
    assert fixture_tests.outcomes("test_left_open.py") == {"passed": 2}, (
        fixture_tests.output
    )


def test_websocket_communicator_reports_a_crash_at_teardown(
    fixture_tests: InnerRun,
) -> None:
    assert fixture_tests.outcomes("test_crash.py") == {"passed": 1, "errors": 1}, (
        fixture_tests.output
    )
    assert "LookupError: crashed on disconnect" in fixture_tests.output


def test_channel_layer_is_flushed_after_each_test(fixture_tests: InnerRun) -> None:
    assert fixture_tests.outcomes("test_flushed.py") == {"passed": 3}, (
        fixture_tests.output
    )


def test_realtime_live_server_shares_the_test_database(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        test_inner="""
        import urllib.request

        import pytest
        from django.contrib.auth.models import User
        from websockets.sync.client import connect

        @pytest.fixture(scope="module")
        def realtime_asgi_application():
            return "tests.integration.testing.asgi_echo:application"

        def get(url):
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()

        def test_server_sees_committed_rows(realtime_live_server):
            User.objects.create(username="alice")
            assert get(realtime_live_server.url + "/users/") == "1"

        def test_rows_are_gone_in_the_next_test(realtime_live_server):
            assert get(realtime_live_server.url + "/users/") == "0"

        def test_websocket_after_a_restart(realtime_live_server):
            realtime_live_server.restart()
            with connect(realtime_live_server.ws_url + "/", open_timeout=5) as ws:
                ws.send("hi")
                assert ws.recv(timeout=5) == "hi"

        def test_a_stopped_server_is_started_for_the_next_test(realtime_live_server):
            realtime_live_server.stop()

        def test_the_server_is_running_again(realtime_live_server):
            assert get(realtime_live_server.url + "/") == "hello from daphne"
        """
    )

    result = run(inner)

    result.assert_outcomes(passed=5)


def require_postgresql() -> None:
    """Skip unless PostgreSQL answers on 127.0.0.1:5432; under CI=true, fail."""
    import psycopg

    try:
        psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3
        ).close()
    except psycopg.OperationalError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {error}")
        pytest.skip(f"PostgreSQL is not running on 127.0.0.1:5432: {error}")


@pytest.mark.postgres
def test_realtime_live_server_shares_a_postgresql_test_database(
    inner: pytest.Pytester,
) -> None:
    require_postgresql()
    name = f"django_realtime_live_{os.getpid()}"
    inner.makepyfile(
        pg_settings=f"""
        from inner_settings import *  # noqa: F403

        DATABASES = {{
            "default": {{
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": 5432,
                "USER": "postgres",
                "NAME": {name!r},
            }}
        }}
        """,
        test_inner="""
        import urllib.request

        import pytest
        from django.contrib.auth.models import User
        from django.db import connection

        @pytest.fixture(scope="module")
        def realtime_asgi_application():
            return "tests.integration.testing.asgi_echo:application"

        def get(url):
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()

        def test_server_sees_committed_rows(realtime_live_server):
            assert connection.settings_dict["NAME"].startswith("test_")
            User.objects.create(username="alice")
            User.objects.create(username="bob")
            assert get(realtime_live_server.url + "/users/") == "2"

        def test_rows_are_gone_in_the_next_test(realtime_live_server):
            assert get(realtime_live_server.url + "/users/") == "0"
        """,
    )

    result = run(inner, settings="pg_settings")

    result.assert_outcomes(passed=2)


def test_fixtures_say_what_they_need_without_django_settings(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        test_inner="""
        def test_live(realtime_live_server):
            pass
        """
    )

    result = inner.runpytest_subprocess(
        *plugin_args(),
        "-p",
        "no:django",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
        timeout=60,
    )

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*The realtime_live_server fixture needs Django settings*pytest-django*"]
    )


# -- the fixtures, used in this process ---------------------------------------


@pytest.fixture(scope="module")
def realtime_asgi_application() -> str:
    return "tests.integration.testing.asgi_echo:application"


async def accepting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()


async def test_websocket_communicator_makes_communicators(
    websocket_communicator: CommunicatorFactory,
) -> None:
    # Left open: the fixture disconnects it at teardown (checked, without
    # depending on test order, by the inner run's test_left_open.py).
    communicator = websocket_communicator(accepting_app, "/ws/?a=1", [(b"x", b"y")])

    assert await communicator.connect() == (True, None)
    assert communicator.scope["query_string"] == b"a=1"
    assert communicator.scope["headers"] == [(b"x", b"y")]


async def test_channel_layer_delivers_messages(channel_layer: ChannelLayer) -> None:
    await channel_layer.send("inbox", {"type": "hello"})

    async with asyncio.timeout(1):
        assert await channel_layer.receive("inbox") == {"type": "hello"}


def test_realtime_live_server_serves_the_test_database(
    realtime_live_server: LiveServer,
) -> None:
    User.objects.create(username="alice")

    url = realtime_live_server.url + "/users/"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"1"
