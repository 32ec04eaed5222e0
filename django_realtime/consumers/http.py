"""An async HTTP consumer for long-poll and streaming responses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from django_realtime.consumers.base import AsyncConsumer
from django_realtime.exceptions import StopConsumer
from django_realtime.types import Message

__all__ = ["AsyncHttpConsumer"]

HeaderPairs = (
    Iterable[tuple[bytes | str, bytes | str]] | Mapping[bytes | str, bytes | str]
)


def _encode_headers(headers: HeaderPairs | None) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [
        (
            name.encode("latin-1") if isinstance(name, str) else name,
            value.encode("latin-1") if isinstance(value, str) else value,
        )
        for name, value in pairs
    ]


class AsyncHttpConsumer(AsyncConsumer):
    """Answer one HTTP request; override :meth:`handle`.

    The request body is collected in full before ``handle(body)`` is called.
    Responses stream: ``send_headers()`` then any number of
    ``send_body(..., more_body=True)``, so sends go out at once rather than
    when the handler returns.

    The consumer stops after the handler that completed the response
    (``send_body()`` without ``more_body``) returns, or when the client goes
    away. So a streaming response (server-sent events, long poll) may return
    from ``handle()`` after sending its headers and send the rest from
    channel layer handlers; unlike Channels, ``handle()`` need not block.
    """

    defer_sends: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._body: list[bytes] = []
        self._complete = False

    async def send_headers(
        self, *, status: int = 200, headers: HeaderPairs | None = None
    ) -> None:
        """Start the response with ``status`` and ``headers``."""
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _encode_headers(headers),
            }
        )

    async def send_body(self, body: bytes, *, more_body: bool = False) -> None:
        """Send a chunk of the body; ``more_body=False`` ends the response."""
        await self.send(
            {"type": "http.response.body", "body": body, "more_body": more_body}
        )
        if not more_body:
            self._complete = True

    async def send_response(
        self, status: int, body: bytes, *, headers: HeaderPairs | None = None
    ) -> None:
        """Send a whole response at once."""
        await self.send_headers(status=status, headers=headers)
        await self.send_body(body)

    async def handle(self, body: bytes) -> None:
        """Answer the request; subclasses must override.

        Raises:
            NotImplementedError: always, unless overridden.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must override handle(self, body) "
            "and send a response."
        )

    async def disconnect(self) -> None:
        """Clean up when the response is complete or the client has gone; override."""

    async def dispatch(self, message: Message) -> None:
        """Dispatch ``message``; stop once a handler has completed the response."""
        await super().dispatch(message)
        if self._complete:
            await self.disconnect()
            raise StopConsumer

    async def http_request(self, message: Message) -> None:
        """Collect the body; once complete, call :meth:`handle`."""
        body = message.get("body")
        if body:
            self._body.append(body)
        if not message.get("more_body", False):
            body, self._body = b"".join(self._body), []
            await self.handle(body)

    async def http_disconnect(self, message: Message) -> None:
        """Call :meth:`disconnect` and stop: the client has gone."""
        await self.disconnect()
        raise StopConsumer
