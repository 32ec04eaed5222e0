"""Run daphne for :class:`~django_realtime.testing.live_server.LiveServer`.

``python -m django_realtime.testing._serve <daphne arguments>`` is
``python -m daphne <daphne arguments>`` with three additions, read from the
JSON object in the ``DJANGO_REALTIME_LIVE_SERVER`` environment variable:

``databases``
    ``{alias: NAME}`` written into ``settings.DATABASES`` before
    ``django.setup()``, so the server uses the test databases the test
    process created, not the development ones.
``allowed_hosts``
    Host names appended to ``settings.ALLOWED_HOSTS``.
``ready_file``
    A path the port is written to once daphne listens; with ``-p 0`` this
    is how the parent learns which port the system chose.
``serve_static``
    Wrap the application in Django's ``ASGIStaticFilesHandler``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# daphne installs its Twisted reactor on import; it must come before anything
# else can import twisted.internet.reactor.
from daphne.cli import CommandLineInterface
from daphne.server import Server

__all__: list[str] = []

CONFIG_ENV = "DJANGO_REALTIME_LIVE_SERVER"


def _write_atomically(path: str, text: str) -> None:
    partial = f"{path}.partial"
    with open(partial, "w", encoding="ascii") as file:
        file.write(text)
    os.replace(partial, path)


class _ReportingServer(Server):  # type: ignore[misc]
    """Write the listening port to the ready file."""

    ready_file: str | None = None

    def listen_success(self, port: Any) -> None:
        super().listen_success(port)
        if self.ready_file and self.listening_addresses:
            _write_atomically(self.ready_file, str(self.listening_addresses[-1][1]))


class _CommandLineInterface(CommandLineInterface):  # type: ignore[misc]
    server_class = _ReportingServer
    serve_static = False

    def load_asgi_app(self, asgi_app_path: str) -> Any:
        from asgiref.compatibility import guarantee_single_callable

        application = guarantee_single_callable(  # type: ignore[no-untyped-call]
            super().load_asgi_app(asgi_app_path)
        )
        if self.serve_static:
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            application = ASGIStaticFilesHandler(application)
        return application


def main(argv: list[str]) -> None:
    """Configure Django from the environment, then run daphne with ``argv``."""
    config: dict[str, Any] = json.loads(os.environ.get(CONFIG_ENV) or "{}")

    import django
    from django.conf import settings

    for alias, name in config.get("databases", {}).items():
        settings.DATABASES[alias]["NAME"] = name
    extra_hosts = config.get("allowed_hosts") or []
    if extra_hosts:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, *extra_hosts]
    django.setup()

    _ReportingServer.ready_file = config.get("ready_file")
    cli = _CommandLineInterface()
    cli.serve_static = bool(config.get("serve_static"))
    cli.run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
