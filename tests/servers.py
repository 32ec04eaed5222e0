"""Real uvicorn and daphne processes for end-to-end tests, on loopback ports.

:class:`ServerProcess` starts one server serving an ASGI application of this
checkout and returns once it listens (the launcher the benchmarks share:
:mod:`django_realtime.testing._servers`); :meth:`ServerProcess.kill` ends
its whole session. :func:`serving` kills it after a ``with`` block, whatever
happens in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from django_realtime.testing import _servers
from django_realtime.testing._servers import ServerError, free_port

__all__ = ["ROOT", "ServerError", "ServerProcess", "free_port", "serving"]

ROOT = Path(__file__).resolve().parents[1]


class ServerProcess(_servers.ServerProcess):
    """One uvicorn or daphne process serving ``app`` from this checkout.

    Args:
        kind: ``"uvicorn"`` or ``"daphne"``.
        app: The application as ``"module:attribute"``.
        env: Environment added to this process's (settings module, options).
        log_path: Where the server's output goes.
        options: More command-line options, e.g. ``("--workers=2",)``.
        startup_timeout: Seconds the server has to listen.

    Raises:
        ServerError: The server exited, or did not listen in time (a
            ``RuntimeError``); the message ends with its output.
    """

    def __init__(
        self,
        kind: str,
        app: str,
        env: Mapping[str, str],
        log_path: Path,
        options: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            kind,
            app,
            env,
            log_path,
            root=ROOT,
            options=options,
            startup_timeout=startup_timeout,
        )


@contextlib.contextmanager
def serving(
    kind: str,
    app: str,
    env: Mapping[str, str],
    log_path: Path,
    options: Sequence[str] = (),
) -> Iterator[ServerProcess]:
    """Run a :class:`ServerProcess` for the ``with`` block; kill it after."""
    server = ServerProcess(kind, app, env, log_path, options)
    try:
        yield server
    finally:
        server.kill()
