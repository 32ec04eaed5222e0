"""A real daphne server for end-to-end tests, in a child process.

:class:`LiveServer` starts ``daphne`` on a loopback port, serving your ASGI
application with your settings and the test databases of the current
process, and can stop and restart it mid-test (same port, so clients
reconnect to the same URL). :class:`RealtimeLiveServerTestCase` wraps it for
unittest, as Django's ``LiveServerTestCase`` does; the pytest plugin has the
``realtime_live_server`` fixture.

The server is a separate process, so it sees only what is committed to the
database (hence a ``TransactionTestCase``), cannot share an in-memory SQLite
database, and does not see ``override_settings`` made in the test process.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar

from django.test import TransactionTestCase
from django.utils.functional import classproperty

from django_realtime.exceptions import LiveServerError
from django_realtime.testing._live_config import (
    CONFIG_ENV,
    application_path,
    checked_options,
    settings_module,
    shared_database_names,
)

__all__ = [
    "ChannelsLiveServerTestCase",
    "LiveServer",
    "LiveServerError",
    "RealtimeLiveServerTestCase",
    "application_path",
    "shared_database_names",
]

logger = logging.getLogger(__name__)

_OUTPUT_TAIL = 4000
_running: weakref.WeakSet[LiveServer] = weakref.WeakSet()


def _log_path(workdir: str) -> str:
    return os.path.join(workdir, "output.log")


class LiveServer:
    """Run daphne in a child process on a loopback port.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with LiveServer("project.asgi:application") as server:
            urlopen(server.url + "/")
            server.restart()   # drops every connection; same port

    Args:
        application: ``"module:attribute"`` (or ``"module.attribute"``) of the
            ASGI application; ``ASGI_APPLICATION`` by default.
        host: The address to bind; a loopback address.
        port: The port to bind; ``0`` lets the system choose. Restarts reuse
            the port of the first start.
        databases: Aliases whose current ``NAME`` the server uses (the test
            databases, in a test run); all aliases by default, none with
            ``()``.
        serve_static: Serve static files, as ``runserver`` does.
        startup_timeout: Seconds to wait for daphne to listen.
        shutdown_timeout: Seconds to wait after SIGTERM before SIGKILL.
        server_options: More keyword arguments for daphne's
            ``daphne.server.Server``, with values JSON can carry, for
            example ``{"websocket_timeout": 5}``; not ``application``,
            ``endpoints``, ``action_logger`` or ``ready_callable``, which
            the live server sets.

    Raises:
        ValueError: ``server_options`` names an argument the live server
            sets, or holds a value JSON cannot carry.
    """

    def __init__(
        self,
        application: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        databases: Iterable[str] | None = None,
        serve_static: bool = False,
        startup_timeout: float = 20.0,
        shutdown_timeout: float = 10.0,
        server_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.application = application
        self.host = host
        self.databases = None if databases is None else list(databases)
        self.serve_static = serve_static
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.server_options = checked_options(server_options or {})
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None
        self._last_output = ""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LiveServer {self.host}:{self._port} {state}>"

    @property
    def port(self) -> int:
        """Return the port the server listens on.

        Raises:
            LiveServerError: The server has not been started yet.
        """
        if not self._port:
            raise LiveServerError(
                "The live server has no port yet: call start() first."
            )
        return self._port

    @property
    def url(self) -> str:
        """Return the server's HTTP base URL, ``http://127.0.0.1:<port>``."""
        return f"http://{self._netloc()}"

    @property
    def ws_url(self) -> str:
        """Return the server's WebSocket base URL, ``ws://127.0.0.1:<port>``."""
        return f"ws://{self._netloc()}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Return whether the daphne process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Return the daphne process id, or ``None`` when stopped."""
        return self._process.pid if self.running and self._process else None

    @property
    def output(self) -> str:
        """Return what daphne has printed (its log and access log) so far."""
        if self._workdir is None:
            return self._last_output
        try:
            with open(
                _log_path(self._workdir), encoding="utf-8", errors="replace"
            ) as file:
                return file.read()
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Start daphne and return once it listens.

        Raises:
            LiveServerError: It is already running, it exited, or it did not
                listen within ``startup_timeout`` seconds; the message holds
                daphne's output.
            ImproperlyConfigured: See :func:`shared_database_names`.
        """
        if self.running:
            raise LiveServerError(f"The live server is already running at {self.url}.")
        # A server that died on its own is reaped first, its output logged.
        self.stop()
        app = application_path(self.application)
        config: dict[str, Any] = {
            "application": app,
            "host": self.host,
            "port": self._port,
            "databases": shared_database_names(self.databases),
            "allowed_hosts": [self.host],
            "serve_static": self.serve_static,
            "server_options": self.server_options,
        }
        environment = dict(os.environ)
        environment["DJANGO_SETTINGS_MODULE"] = settings_module()
        # The child must import what this process can: the project, the tests.
        paths = [entry or os.getcwd() for entry in sys.path]
        if environment.get("PYTHONPATH"):
            paths.append(environment["PYTHONPATH"])
        environment["PYTHONPATH"] = os.pathsep.join(paths)
        workdir = self._workdir = tempfile.mkdtemp(prefix="django_realtime-live-")
        ready_file = os.path.join(workdir, "port")
        config["ready_file"] = ready_file
        environment[CONFIG_ENV] = json.dumps(config)
        command = [sys.executable, "-m", "django_realtime.testing._serve"]
        logger.debug(
            "Starting the live server: %s on %s:%s",
            app,
            self.host,
            self._port or "<any free port>",
        )
        with open(_log_path(workdir), "wb") as log:
            process = self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        _running.add(self)
        self._port = self._wait_for_port(process, ready_file)
        logger.debug("Live server %s listening on %s", app, self.url)

    def _wait_for_port(self, process: subprocess.Popen[bytes], ready_file: str) -> int:
        deadline = time.monotonic() + self.startup_timeout
        where = f"{self.host}:{self._port or '<any free port>'}"
        while True:
            try:
                with open(ready_file, encoding="ascii") as file:
                    return int(file.read())
            except FileNotFoundError:
                pass
            code = process.poll()
            if code is not None:
                output = self._discard()
                raise LiveServerError(
                    f"Expected daphne to listen on {where}, but it exited with "
                    f"code {code}. Its output:\n{output[-_OUTPUT_TAIL:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise LiveServerError(
                    f"Expected daphne to listen on {where} within "
                    f"{self.startup_timeout} s, but it did not. Its output:\n"
                    f"{self._last_output[-_OUTPUT_TAIL:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop daphne: SIGTERM, then SIGKILL after ``shutdown_timeout``.

        Open connections drop. Does nothing when not running.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is not None:
            logger.warning(
                "The live server had already exited with code %s before stop(); "
                "its output:\n%s",
                process.returncode,
                self.output[-_OUTPUT_TAIL:],
            )
        else:
            process.terminate()
            try:
                process.wait(self.shutdown_timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "The live server (pid %s) was still running %s s after "
                    "SIGTERM; killing it.",
                    process.pid,
                    self.shutdown_timeout,
                )
                process.kill()
                process.wait()
        output = self._discard()
        logger.debug("The live server stopped; its output:\n%s", output)

    def kill(self) -> None:
        """Kill daphne with SIGKILL, as a crash would.

        Connections drop without a close frame and the application gets no
        ``websocket.disconnect``. :meth:`start` brings the server back on the
        same port. Does nothing when not running.
        """
        if self._process is None:
            return
        self._process.kill()
        self._discard()

    def _discard(self) -> str:
        """Forget the stopped process and its files; return its output."""
        output = self.output
        self._last_output = output
        if self._process is not None:
            self._process.wait()
        self._process = None
        _running.discard(self)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return output

    def restart(self) -> None:
        """Stop and start again on the same port, dropping every connection.

        Raises:
            LiveServerError: The port was taken in between, or daphne failed.
        """
        self.stop()
        self.start()

    async def astart(self) -> None:
        """Start the server without blocking the event loop."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """Stop the server without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        """Restart the server without blocking the event loop."""
        await asyncio.to_thread(self.restart)

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_forgotten_servers() -> None:
    """Leave no daphne behind when a test run ends without stopping one."""
    for server in list(_running):
        server.stop()


class RealtimeLiveServerTestCase(TransactionTestCase):
    """Run a real daphne server for the tests of this class.

    Like Django's ``LiveServerTestCase``: the server starts once per class,
    serves ``ASGI_APPLICATION`` (or :attr:`application`) with the test
    databases, and test data must be committed, which a
    ``TransactionTestCase`` does. Use :attr:`live_server_url` and
    :attr:`live_server_ws_url`; ``self.live_server.restart()`` drops all
    connections.
    """

    #: The address to bind.
    host = "127.0.0.1"
    #: The port to bind; ``0`` picks a free one.
    port = 0
    #: ``"module:attribute"`` of the application; ``ASGI_APPLICATION`` if None.
    application: ClassVar[str | None] = None
    #: Serve static files; by default when django.contrib.staticfiles is
    #: installed, as Channels' live server does.
    serve_static: ClassVar[bool | None] = None
    live_server: ClassVar[LiveServer]

    @classproperty
    def live_server_url(cls) -> str:
        """Return ``http://host:port`` of the running server."""
        return cls.live_server.url

    @classproperty
    def live_server_ws_url(cls) -> str:
        """Return ``ws://host:port`` of the running server."""
        return cls.live_server.ws_url

    @classmethod
    def setUpClass(cls) -> None:
        """Start the server after the class's database setup."""
        super().setUpClass()
        from django.apps import apps

        serve_static = cls.serve_static
        if serve_static is None:
            serve_static = apps.is_installed("django.contrib.staticfiles")
        cls.live_server = LiveServer(
            cls.application,
            host=cls.host,
            port=cls.port,
            databases=sorted(cls.databases),
            serve_static=serve_static,
        )
        cls.live_server.start()
        cls.addClassCleanup(cls.live_server.stop)


#: Channels' name, so ported tests keep working.
ChannelsLiveServerTestCase = RealtimeLiveServerTestCase
