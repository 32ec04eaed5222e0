"""A WebSocket connection to an ASGI application in this process, no network.

:class:`LocalSocket` runs the application for one ``websocket`` scope, as a
server would, and speaks the ASGI messages for its client: every
middleware, route and consumer runs as for a browser's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from django_realtime.types import ASGIApp

__all__ = ["LocalSocket", "Refused", "websocket_scope"]


class Refused(Exception):
    """The application closed the connection, before or after accepting it.

    Attributes:
        code: The close code.
        reason: The close reason (empty when none was given).
        accepted: Whether the handshake had been accepted.
    """

    def __init__(self, code: int, reason: str, accepted: bool) -> None:
        super().__init__(f"closed with {code}")
        self.code = code
        self.reason = reason
        self.accepted = accepted


def _refused(message: dict[str, Any], accepted: bool) -> Refused:
    return Refused(message.get("code") or 1000, message.get("reason") or "", accepted)


def websocket_scope(path: str, host: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Return the scope of a WebSocket handshake for ``path`` on ``host``.

    Args:
        path: The path, with an optional ``?query``.
        host: The ``Host`` header.
        headers: More headers (``Origin``, ``Cookie``), by name.
    """
    path, _, query = path.partition("?")
    raw = [(b"host", host.encode("latin-1"))]
    raw += [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers.items()
    ]
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 0),
        "server": (host, 80),
        "subprotocols": [],
        "extensions": {},
    }


class LocalSocket:
    """The client side of one WebSocket connection to ``application``.

    Call :meth:`open` first and :meth:`close` always (it ends the
    application), from one event loop.

    Args:
        application: The ASGI application.
        scope: The connection's scope (:func:`websocket_scope`).
    """

    def __init__(self, application: ASGIApp, scope: Mapping[str, Any]) -> None:
        self._application = application
        self._scope = dict(scope)
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.accepted = False

    async def _run(self) -> None:
        await self._application(self._scope, self._to_app.get, self._from_app.put)

    async def open(self) -> None:
        """Send the handshake; return once the application accepts it.

        Raises:
            Refused: the application closed the connection instead.
            RuntimeError: the application ended without answering.
        """
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "websocket.connect"})
        message = await self._next()
        if message["type"] == "websocket.accept":
            self.accepted = True
            return
        if message["type"] == "websocket.close":
            raise Refused(
                message.get("code") or 1000, message.get("reason") or "", False
            )
        raise RuntimeError(
            "Expected 'websocket.accept' or 'websocket.close' from the application, "
            f"got {message['type']!r}."
        )

    async def send_text(self, text: str) -> None:
        """Send one text frame to the application."""
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def receive(self) -> str | bytes:
        """Return the next frame the application sends.

        Raises:
            Refused: the application closed the connection.
            RuntimeError: the application ended without closing it.
        """
        message = await self._next()
        if message["type"] == "websocket.close":
            raise Refused(
                message.get("code") or 1000, message.get("reason") or "", True
            )
        if message["type"] != "websocket.send":
            raise RuntimeError(
                "Expected 'websocket.send' or 'websocket.close' from the "
                f"application, got {message['type']!r}."
            )
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes = message.get("bytes") or b""
        return data

    async def _next(self) -> dict[str, Any]:
        """Return the application's next message, or raise why there is none."""
        task = self._task
        if task is None:
            raise RuntimeError("LocalSocket.open() must be called first.")
        getting = asyncio.ensure_future(self._from_app.get())
        try:
            await asyncio.wait({getting, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        task.result()  # the application's error, if it failed
        raise RuntimeError("The application ended without closing the connection.")

    async def close(self, code: int = 1000, grace: float = 5.0) -> None:
        """Disconnect with ``code``; wait for the application to end.

        An application still running after ``grace`` seconds is cancelled.
        """
        task, self._task = self._task, None
        if task is None or task.done():
            return
        await self._to_app.put({"type": "websocket.disconnect", "code": code})
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(grace):
                await asyncio.shield(task)
        if not task.done():
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
