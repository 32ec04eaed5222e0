"""Serve HTTP and WebSocket in development: ``manage.py runserver`` on daphne.

The command extends Django's own ``runserver`` (staticfiles' flavour when
``django.contrib.staticfiles`` is installed, like Django picks it), so the
flags, the autoreloader and the system checks behave as Django users know.
Only the server changes: daphne serves ``ASGI_APPLICATION``. ``--noasgi``
runs Django's WSGI server unchanged.

``django_realtime`` must come before ``django.contrib.staticfiles`` (and
instead of ``daphne``) in ``INSTALLED_APPS`` for Django to pick this command;
system checks ``django_realtime.E004`` and ``W001`` say so.

The application is served behind
:class:`~django_realtime.servers.daphne.FlowControl`, so that WebSocket
sends wait for a client that does not read whatever middleware the project
puts around its router.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from daphne import __version__ as daphne_version
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser
from django.db import connections
from django.utils import autoreload

from django_realtime import __version__
from django_realtime.servers.daphne import FlowControl

if TYPE_CHECKING:
    from django.core.management.commands.runserver import Command as _Runserver
elif apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as _Runserver,
    )
else:
    from django.core.management.commands.runserver import Command as _Runserver

__all__ = ["Command", "StaticFilesRouter"]

logger = logging.getLogger(__name__)

_Scope = dict[str, Any]
_Receive = Callable[[], Any]
_Send = Callable[[dict[str, Any]], Any]
_Application = Callable[[_Scope, _Receive, _Send], Any]


class StaticFilesRouter:
    """Serve static files for HTTP requests; pass every other scope through.

    Django's :class:`~django.contrib.staticfiles.handlers.ASGIStaticFilesHandler`
    sees HTTP scopes only, so WebSocket connections reach the application
    untouched.
    """

    def __init__(self, application: _Application) -> None:
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        self.application = application
        # Django's stubs want an ASGIHandler; any ASGI application works.
        self.static_handler: Any = ASGIStaticFilesHandler(cast(Any, application))

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Route ``scope`` to the static files handler or to the application."""
        if scope["type"] == "http":
            await self.static_handler(scope, receive, send)
        else:
            await self.application(scope, receive, send)


class _ListenFailures(logging.Handler):
    """Keep what daphne logs when it cannot listen, to report it."""

    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage())


def _timeout(value: str) -> float:
    """Parse a positive number of seconds for argparse."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, got {value!r}"
        )
    return seconds


class Command(_Runserver):
    """Run daphne with ``ASGI_APPLICATION``, reloading on code changes."""

    help = (
        "Start a development server for HTTP and WebSocket: daphne serving "
        "ASGI_APPLICATION (django_realtime)."
    )
    # Set by Django's handle(); declared for the type checker.
    addr: str
    port: str

    #: The ASGI server class; tests substitute a recording double.
    asgi_server_cls: Callable[..., Any] = Server
    # The server being run, and whether it has listened.
    _server: Any = None
    _bound = False

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--noasgi`` and daphne's timeouts to Django's flags."""
        super().add_arguments(parser)
        parser.add_argument(
            "--noasgi",
            action="store_false",
            dest="use_asgi",
            help="Run Django's WSGI development server instead (no WebSocket).",
        )
        parser.add_argument(
            "--http-timeout",
            type=_timeout,
            default=None,
            help="Seconds an HTTP request may take (default: no limit).",
        )
        parser.add_argument(
            "--websocket-handshake-timeout",
            type=_timeout,
            default=5.0,
            help="Seconds a WebSocket handshake may take (default: 5).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Refuse to start without ``ASGI_APPLICATION``, then run as Django does."""
        if options["use_asgi"] and not getattr(settings, "ASGI_APPLICATION", None):
            module = os.environ.get("DJANGO_SETTINGS_MODULE") or "mysite.settings"
            project = module.split(".")[0]
            raise CommandError(
                "runserver serves ASGI_APPLICATION, which is not set. Set "
                f"ASGI_APPLICATION = '{project}.asgi.application', or pass "
                "--noasgi for Django's WSGI server."
            )
        self._verbosity = int(options.get("verbosity", 1))
        super().handle(*args, **options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        """Run the checks, then daphne until it is stopped.

        Under the autoreloader this runs in a thread of the child process, so
        daphne must not install signal handlers there.
        """
        if not options["use_asgi"]:
            super().inner_run(*args, **options)
            return
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()

        self._server = self.asgi_server_cls(**self.get_server_kwargs(options))
        failures = _ListenFailures()
        daphne_logger = logging.getLogger("daphne.server")
        daphne_logger.addHandler(failures)
        try:
            self._server.run()
        except KeyboardInterrupt:
            shutdown_message = options.get("shutdown_message", "")
            if shutdown_message:
                self.stdout.write(shutdown_message)
            return
        finally:
            daphne_logger.removeHandler(failures)
        if not self._bound:
            # daphne stops without running when an endpoint fails to listen.
            reason = failures.reasons[-1] if failures.reasons else None
            self.stderr.write(
                f"Error: {reason or 'daphne stopped before it listened.'}"
            )
            # sys.exit() would only end this thread under the autoreloader.
            os._exit(1)
        logger.debug("daphne stopped")

    def get_server_kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        """Return the keyword arguments for daphne's ``Server``."""
        return {
            "application": self.get_application(options),
            "endpoints": build_endpoint_description_strings(
                host=self._bind_addr(), port=int(self.port)
            ),
            "signal_handlers": not options["use_reloader"],
            "action_logger": self.log_action,
            "http_timeout": options.get("http_timeout"),
            "root_path": settings.FORCE_SCRIPT_NAME or "",
            "websocket_handshake_timeout": options.get(
                "websocket_handshake_timeout", 5.0
            ),
            "verbosity": int(options.get("verbosity", 1)),
            "ready_callable": self._listening,
        }

    def get_application(self, options: dict[str, Any]) -> _Application:
        """Return ``ASGI_APPLICATION`` behind flow control and, if asked, static files.

        Static files are served when staticfiles is installed, ``--nostatic``
        is not given, and ``DEBUG`` is on or ``--insecure`` is given.
        """
        from django_realtime.routing import get_default_application

        try:
            application: _Application = get_default_application()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        application = FlowControl(application)
        use_static = options.get("use_static_handler", False)
        insecure = options.get("insecure_serving", False)
        if use_static and (settings.DEBUG or insecure):
            return StaticFilesRouter(application)
        return application

    def _bind_addr(self) -> str:
        """Return the interface to listen on (Django lets ``0`` mean any)."""
        return "0.0.0.0" if self.addr == "0" else str(self.addr)

    def _listening(self) -> None:
        """Print the banner: daphne listens (its ``ready_callable``)."""
        self.on_bind(self._server.listening_addresses[-1][1])

    def on_bind(self, server_port: int) -> None:
        """Print the banner once daphne listens on ``server_port``."""
        self._bound = True
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        # An IPv6 address is shown in brackets, as Django shows it.
        addr = f"[{self.addr}]" if ":" in self.addr else self._bind_addr()
        now = datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings "
            f"{settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/Daphne development server at "
            f"{self.protocol}://{addr}:{server_port}/\n"
            f"Serving HTTP and WebSocket with django_realtime {__version__} "
            f"on daphne {daphne_version}.\n"
            f"Quit the server with {quit_command}."
        )
        if os.environ.get("DJANGO_RUNSERVER_HIDE_WARNING") != "true":
            self.stdout.write(
                self.style.WARNING(
                    "WARNING: This is a development server. Do not use it in "
                    "production; run your ASGI application with daphne or "
                    "uvicorn instead."
                )
            )
        self.stdout.flush()

    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        """Write one access-log line from daphne to stdout.

        Verbosity 0 writes nothing; verbosity 2 adds WebSocket handshakes.
        """
        verbosity = getattr(self, "_verbosity", 1)
        if verbosity < 1:
            return
        now = datetime.now().strftime("%d/%b/%Y %H:%M:%S")
        if protocol == "http" and action == "complete":
            status = int(details["status"])
            line = (
                f"[{now}] HTTP {details['method']} {details['path']} {status} "
                f"[{details['time_taken']:.2f}, {details['client']}]"
            )
            self.stdout.write(self._status_style(status)(line))
        elif protocol == "websocket":
            if action == "connecting" and verbosity < 2:
                return
            word = {
                "connecting": "HANDSHAKING",
                "connected": "CONNECT",
                "disconnected": "DISCONNECT",
                "rejected": "REJECT",
            }.get(action, action.upper())
            self.stdout.write(
                f"[{now}] WebSocket {word} {details['path']} [{details['client']}]"
            )
        else:
            return
        self.stdout.flush()

    def _status_style(self, status: int) -> Callable[[str], str]:
        """Return the terminal style Django uses for an HTTP ``status``."""
        style = self.style
        if 200 <= status < 300:
            return style.HTTP_SUCCESS
        if 100 <= status < 200:
            return style.HTTP_INFO
        if status == 304:
            return style.HTTP_NOT_MODIFIED
        if 300 <= status < 400:
            return style.HTTP_REDIRECT
        if status == 404:
            return style.HTTP_NOT_FOUND
        if 400 <= status < 500:
            return style.HTTP_BAD_REQUEST
        return style.HTTP_SERVER_ERROR
