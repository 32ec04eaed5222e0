"""Run daphne for :class:`~django_realtime.testing.live_server.LiveServer`.

``python -m django_realtime.testing._serve`` serves an ASGI application on
daphne as ``python -m daphne`` would (its log and access log on the
standard streams), configured by the JSON object in the
``DJANGO_REALTIME_LIVE_SERVER`` environment variable
(:mod:`~django_realtime.testing._live_config`):

``application``
    ``"module:attribute"`` of the ASGI application (the attribute may be
    dotted).
``host``, ``port``
    The address to listen on; port ``0`` lets the system choose.
``databases``
    ``{alias: NAME}`` written into ``settings.DATABASES`` before
    ``django.setup()``, so the server uses the test databases the test
    process created, not the development ones.
``allowed_hosts``
    Host names appended to ``settings.ALLOWED_HOSTS``.
``serve_static``
    Wrap the application in Django's ``ASGIStaticFilesHandler``.
``server_options``
    More keyword arguments for daphne's ``Server``.
``ready_file``
    A path the port is written to once daphne listens; with port ``0`` this
    is how the parent learns which port the system chose.

Only daphne's public API is used: its ``Server``, whose ``ready_callable``
is called once every endpoint listens, with the bound addresses in
``listening_addresses``. The process exits with status 1 when daphne could
not listen (daphne logs why), and 0 once it has stopped.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from typing import Any

# daphne installs its Twisted reactor on import; it must come before anything
# else can import twisted.internet.reactor.
from daphne.access import AccessLogGenerator
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server

from django_realtime.testing._live_config import CONFIG_ENV

__all__: list[str] = []

# daphne's own format at its default verbosity.
_LOG_FORMAT = "%(asctime)-15s %(levelname)-8s %(message)s"


def _write_atomically(path: str, text: str) -> None:
    partial = f"{path}.partial"
    with open(partial, "w", encoding="ascii") as file:
        file.write(text)
    os.replace(partial, path)


def _load(path: str) -> Any:
    """Return the object ``"module:attribute.path"`` names."""
    module, _, attributes = path.partition(":")
    if not attributes:
        raise ValueError(
            f"Expected the application as 'module:attribute', got {path!r}."
        )
    found: Any = importlib.import_module(module)
    for name in attributes.split("."):
        found = getattr(found, name)
    return found


def _application(config: dict[str, Any]) -> Any:
    """Return the ASGI application to serve, behind static files if asked."""
    from asgiref.compatibility import guarantee_single_callable

    application = guarantee_single_callable(  # type: ignore[no-untyped-call]
        _load(config["application"])
    )
    if config.get("serve_static"):
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        application = ASGIStaticFilesHandler(application)
    return application


def serve(config: dict[str, Any]) -> bool:
    """Serve until daphne stops; return whether it listened.

    Call it once Django is set up.
    """
    ready_file = config.get("ready_file")
    listened = False

    def on_ready() -> None:
        nonlocal listened
        listened = True
        if ready_file and server.listening_addresses:
            _write_atomically(ready_file, str(server.listening_addresses[-1][1]))

    server = Server(
        **config.get("server_options", {}),
        application=_application(config),
        endpoints=build_endpoint_description_strings(
            host=config["host"], port=int(config["port"])
        ),
        action_logger=AccessLogGenerator(sys.stdout),
        ready_callable=on_ready,
    )
    server.run()
    return listened


def main() -> None:
    """Configure Django from the environment, then run daphne."""
    config: dict[str, Any] = json.loads(os.environ.get(CONFIG_ENV) or "{}")
    # The parent reads the output while the server runs.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    import django
    from django.conf import settings

    for alias, name in config.get("databases", {}).items():
        settings.DATABASES[alias]["NAME"] = name
    extra_hosts = config.get("allowed_hosts") or []
    if extra_hosts:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, *extra_hosts]
    django.setup()
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)

    if not serve(config):
        sys.exit(1)


if __name__ == "__main__":
    main()
