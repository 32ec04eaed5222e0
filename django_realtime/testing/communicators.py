"""Drive an ASGI application from a test, one message at a time.

:class:`ApplicationCommunicator` extends asgiref's communicator of the same
name, so everything written for it (and for Channels' test tools) works.
Three things behave better:

* a crashed application is reported at once, with its own exception, instead
  of after the receive timeout;
* an application that returns without answering is reported as such, not as
  a timeout;
* every failure says what was expected and what arrived.

:class:`WebsocketCommunicator` and :class:`HttpCommunicator` build the scope
a real server would build and speak the protocol for you.
"""

# The timeout parameters are the API Channels users know (ASYNC109).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from asgiref.testing import ApplicationCommunicator as _AsgirefCommunicator

from django_realtime._compat import asgiref as _asgiref

__all__ = ["ApplicationCommunicator", "HttpCommunicator", "WebsocketCommunicator"]

#: Where the application sees the connection coming from, as Django's test
#: client does.
CLIENT = ("127.0.0.1", 0)
SERVER = ("testserver", 80)

HeaderPairs = Iterable[tuple[bytes | str, bytes | str]]


class ApplicationCommunicator(_AsgirefCommunicator):
    """Run an ASGI application as a task and exchange messages with it.

    The application starts on the first :meth:`send_input` or
    :meth:`receive_output`. Until then, :attr:`scope` may still be changed,
    for example ``communicator.scope["user"] = user``.
    """

    scope: dict[str, Any]

    def __init__(self, application: Any, scope: dict[str, Any]) -> None:
        super().__init__(application, scope)  # type: ignore[no-untyped-call]
        self._constructed = True

    @property
    def running(self) -> bool:
        """Return whether the application has started and not yet returned."""
        future = _asgiref.communicator_task(self)
        return future is not None and not future.done()

    def _application_task(self) -> asyncio.Task[None]:
        task: asyncio.Task[None] = self.future
        return task

    def _raise_if_failed(self) -> None:
        """Raise the application's exception, if it has ended with one."""
        task = self._application_task()
        if not task.done():
            return
        if task.cancelled():
            raise RuntimeError(
                "The application is not running any more: it was cancelled, "
                "usually after an earlier receive timed out."
            )
        exception = task.exception()
        if exception is not None:
            raise exception

    async def send_input(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the application.

        Raises:
            Exception: The application has crashed; its exception is raised.
        """
        self._raise_if_failed()
        await self.input_queue.put(message)

    async def receive_output(self, timeout: float = 1) -> dict[str, Any]:
        """Return the next message the application sends.

        Args:
            timeout: Seconds to wait. On timeout the application is cancelled,
                as asgiref and Channels do.

        Raises:
            Exception: The application crashed; its exception is raised as
                soon as it happens.
            AssertionError: The application returned without sending.
            TimeoutError: Nothing arrived within ``timeout`` seconds.
        """
        task = self._application_task()
        queue: asyncio.Queue[dict[str, Any]] = self.output_queue
        self._raise_if_failed()
        if not queue.empty():
            return queue.get_nowait()
        if task.done():
            raise AssertionError(
                "Expected a message from the application, but it has returned "
                "without sending one."
            )
        getter = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait(
                {getter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            # Cancelling a pending Queue.get() leaves any message in the queue.
            if not getter.done():
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
        self._raise_if_failed()
        if getter.done() and not getter.cancelled():
            return getter.result()
        if task.done():
            raise AssertionError(
                "Expected a message from the application, but it returned "
                "without sending one."
            )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise TimeoutError(
            f"Expected a message from the application within {timeout} s, "
            "but none arrived; the application was cancelled."
        )

    async def receive_nothing(
        self, timeout: float = 0.1, interval: float = 0.01
    ) -> bool:
        """Return whether the application sends nothing for ``timeout`` seconds.

        A message that arrives is left in place for the next receive.

        Raises:
            Exception: The application crashed; its exception is raised.
        """
        queue: asyncio.Queue[dict[str, Any]] = self.output_queue
        self._raise_if_failed()
        deadline = time.monotonic() + timeout
        while queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0)))
            self._raise_if_failed()
        return queue.empty()

    async def wait(self, timeout: float = 1) -> None:
        """Wait for the application to return.

        Raises:
            Exception: The application crashed; its exception is raised.
            TimeoutError: It was still running after ``timeout`` seconds; it
                has been cancelled.
        """
        task = self._application_task()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise TimeoutError(
                f"Expected the application to return within {timeout} s, but "
                "it was still running; it was cancelled."
            )
        if not task.cancelled() and task.exception() is not None:
            task.result()

    def __del__(self) -> None:
        # A constructor that raised leaves nothing for asgiref to clean up.
        if self.__dict__.get("_constructed"):
            super().__del__()  # type: ignore[no-untyped-call]


def _split_path(path: str) -> tuple[str, bytes, bytes]:
    """Return the decoded path, the raw path and the query string of ``path``."""
    if not isinstance(path, str):
        raise TypeError(f"Expected the path as a str, got {type(path).__name__}.")
    parts = urlsplit(path)
    # A server receives the path percent-encoded; keep escapes already there.
    raw_path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=~?")
    return unquote(raw_path), raw_path.encode("ascii"), query.encode("ascii")


def _encode_headers(headers: HeaderPairs | None) -> list[tuple[bytes, bytes]]:
    """Return ``headers`` as ASGI wants them: lowercase names, bytes pairs."""
    encoded = []
    for name, value in headers or ():
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        encoded.append((name.lower(), value))
    return encoded


class WebsocketCommunicator(ApplicationCommunicator):
    """Talk to a WebSocket ASGI application as a browser would.

    Args:
        application: The ASGI application, for example your
            ``ProtocolTypeRouter`` or ``MyConsumer.as_asgi()``.
        path: The request path, with an optional query string.
        headers: ``(name, value)`` pairs, bytes or str; names are lowercased.
        subprotocols: The subprotocols the client offers.
        spec_version: The ASGI WebSocket spec version put in
            ``scope["asgi"]["spec_version"]``.
    """

    def __init__(
        self,
        application: Any,
        path: str,
        headers: HeaderPairs | None = None,
        subprotocols: Iterable[str] | None = None,
        spec_version: str | None = None,
    ) -> None:
        decoded_path, raw_path, query_string = _split_path(path)
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": spec_version or "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": decoded_path,
            "raw_path": raw_path,
            "query_string": query_string,
            "root_path": "",
            "headers": _encode_headers(headers),
            "client": CLIENT,
            "server": SERVER,
            "subprotocols": list(subprotocols or ()),
        }
        super().__init__(application, scope)
        #: Headers the application sent with ``websocket.accept``.
        self.response_headers: list[tuple[bytes, bytes]] | None = None

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Open the connection.

        Returns:
            ``(True, subprotocol)`` when accepted (``subprotocol`` may be
            ``None``), ``(False, close_code)`` when refused.

        Raises:
            AssertionError: The application answered with something else.
        """
        await self.send_input({"type": "websocket.connect"})
        message = await self.receive_output(timeout)
        if message["type"] == "websocket.accept":
            self.response_headers = list(message.get("headers", []))
            return True, message.get("subprotocol")
        if message["type"] == "websocket.close":
            return False, message.get("code", 1000)
        raise AssertionError(
            "Expected 'websocket.accept' or 'websocket.close' in answer to "
            f"'websocket.connect', got {message!r}."
        )

    async def send_to(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Send one frame, text or binary, to the application.

        Raises:
            TypeError: Not exactly one of ``text_data`` and ``bytes_data`` was
                given, or it has the wrong type.
        """
        if (text_data is None) == (bytes_data is None):
            raise TypeError(
                "Expected exactly one of text_data and bytes_data, got "
                f"text_data={text_data!r} and bytes_data={bytes_data!r}."
            )
        if text_data is not None:
            if not isinstance(text_data, str):
                raise TypeError(
                    f"Expected text_data as a str, got {type(text_data).__name__}."
                )
            await self.send_input({"type": "websocket.receive", "text": text_data})
            return
        if not isinstance(bytes_data, bytes):
            raise TypeError(
                f"Expected bytes_data as bytes, got {type(bytes_data).__name__}."
            )
        await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        """Send ``data`` encoded as JSON in a text frame."""
        await self.send_to(text_data=json.dumps(data))

    async def receive_from(self, timeout: float = 1) -> str | bytes:
        """Return the payload of the next frame the application sends.

        Returns:
            ``str`` for a text frame, ``bytes`` for a binary frame.

        Raises:
            Exception: The application crashed; its exception is raised.
            AssertionError: The application sent something else, for example
                closed the connection.
            TimeoutError: Nothing arrived within ``timeout`` seconds.
        """
        message = await self.receive_output(timeout)
        if message["type"] != "websocket.send":
            raise AssertionError(f"Expected a 'websocket.send', got {message!r}.")
        text, data = message.get("text"), message.get("bytes")
        if isinstance(text, str) and data is None:
            return text
        if isinstance(data, bytes) and text is None:
            return data
        raise AssertionError(
            "Expected a 'websocket.send' with either a str 'text' or bytes "
            f"'bytes', got {message!r}."
        )

    async def receive_json_from(self, timeout: float = 1) -> Any:
        """Return the next text frame, decoded from JSON.

        Raises:
            AssertionError: The frame is binary or not valid JSON.
        """
        payload = await self.receive_from(timeout)
        if not isinstance(payload, str):
            raise AssertionError(
                f"Expected a text frame holding JSON, got a binary frame {payload!r}."
            )
        try:
            return json.loads(payload)
        except json.JSONDecodeError as error:
            raise AssertionError(
                f"Expected a text frame holding JSON, got {payload!r} ({error})."
            ) from error

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        """Tell the application the client went away, and wait for it to end.

        Use ``code=1006`` to simulate a dropped connection.

        Raises:
            Exception: The application crashed; its exception is raised.
            TimeoutError: The application did not return within ``timeout``.
        """
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


class HttpCommunicator(ApplicationCommunicator):
    """Send one HTTP request to an ASGI application and read the response.

    Args:
        application: The ASGI application.
        method: The HTTP method; it is uppercased.
        path: The request path, with an optional query string.
        body: The request body, sent in one ``http.request`` message.
        headers: ``(name, value)`` pairs, bytes or str; names are lowercased.
    """

    def __init__(
        self,
        application: Any,
        method: str,
        path: str,
        body: bytes = b"",
        headers: HeaderPairs | None = None,
    ) -> None:
        if not isinstance(body, bytes):
            raise TypeError(f"Expected body as bytes, got {type(body).__name__}.")
        decoded_path, raw_path, query_string = _split_path(path)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": decoded_path,
            "raw_path": raw_path,
            "query_string": query_string,
            "root_path": "",
            "headers": _encode_headers(headers),
            "client": CLIENT,
            "server": SERVER,
        }
        super().__init__(application, scope)
        self.body = body

    async def get_response(self, timeout: float = 1) -> dict[str, Any]:
        """Send the request and return the whole response.

        After the last body chunk the application is told the client
        disconnected and is awaited, so errors it raises after responding
        are not lost.

        Returns:
            ``{"status": int, "headers": [(bytes, bytes), ...], "body": bytes}``
            with the body joined over all chunks.

        Raises:
            Exception: The application crashed; its exception is raised.
            AssertionError: The application sent messages out of order.
            TimeoutError: A message did not arrive within ``timeout`` seconds.
        """
        await self.send_input(
            {"type": "http.request", "body": self.body, "more_body": False}
        )
        start = await self.receive_output(timeout)
        if start["type"] != "http.response.start":
            raise AssertionError(f"Expected 'http.response.start', got {start!r}.")
        chunks = []
        while True:
            message = await self.receive_output(timeout)
            if message["type"] != "http.response.body":
                raise AssertionError(f"Expected 'http.response.body', got {message!r}.")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await self.send_input({"type": "http.disconnect"})
        await self.wait(timeout)
        return {
            "status": start["status"],
            "headers": list(start.get("headers", [])),
            "body": b"".join(chunks),
        }
