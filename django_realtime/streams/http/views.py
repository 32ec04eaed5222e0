"""The Django views of the HTTP stream transports: POST, SSE and long-poll.

:class:`StreamHttpViews` serves one
:class:`~django_realtime.streams.consumer.StreamConsumer` class as async
Django views, so the project's middleware applies (sessions, the logged-in
user, whatever else it runs). Each view checks what a WebSocket handshake
would have checked: the ``Origin`` (the rules of
:class:`~django_realtime.security.AllowedHostsOriginValidator`, or
``allowed_origins``), and on a ``POST`` Django's CSRF check, whether or
not the project runs ``CsrfViewMiddleware``. A refused request gets a 4xx
status and a JSON body ``{"error": <code>, "message": <text>}``, and logs
one line. The wire format is in ``docs/reference/streams-protocol.rst``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware, get_token

from django_realtime.middleware.limits import stats as limit_stats
from django_realtime.middleware.origin import (
    HostRules,
    is_origin_allowed,
    is_request_origin_allowed,
)
from django_realtime.ops.logs import printable
from django_realtime.streams.consumer import StreamConsumer
from django_realtime.streams.http.rates import ClientRates
from django_realtime.streams.http.shell import Resume, admit, answer, make_consumer
from django_realtime.streams.http.tokens import Client, TokenSigner, binding_of
from django_realtime.streams.http.wire import (
    HttpRefusal,
    parse_body,
    parse_positions,
    sse_event,
)

__all__ = ["CLIENT_HEADER", "StreamHttpViews"]

logger = logging.getLogger("django_realtime.streams")

#: The request header of a ``POST`` that carries the client id.
CLIENT_HEADER = "X-Realtime-Client"

# A long-poll with this many frames returns without lingering.
_ENOUGH = 32


def _unused(request: HttpRequest) -> HttpResponse:  # pragma: no cover
    raise RuntimeError("The CSRF check never calls the view.")


def _json(status: int, body: bytes) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


async def _scope(request: HttpRequest, route: dict[str, Any]) -> dict[str, Any]:
    """Return the consumer's scope for ``request``, with its user and session.

    ``route`` is the URL's keyword arguments, as ``scope["url_route"]`` has
    them over a WebSocket.
    """
    base = getattr(request, "scope", None)
    if base is None:
        scope: dict[str, Any] = {"type": "http", "path": request.path, "headers": []}
    else:
        scope = dict(base)
    scope["url_route"] = {"args": (), "kwargs": route}
    auser = getattr(request, "auser", None)
    if auser is not None:
        scope["user"] = await auser()
    session = getattr(request, "session", None)
    if session is not None:
        scope["session"] = session
    return scope


def _binding(scope: dict[str, Any]) -> str:
    session = scope.get("session")
    user = scope.get("user")
    user_key = user.pk if user is not None and user.is_authenticated else None
    return binding_of(getattr(session, "session_key", None), user_key)


class StreamHttpViews:
    """The HTTP transports of one consumer class, as async Django views.

    Args:
        consumer_class: The :class:`StreamConsumer` subclass to serve.
        poll_timeout: Most seconds a long-poll waits for a frame.
        poll_linger: Most seconds a long-poll that has frames waits for
            more, only when its client was behind (frames had been
            published after the positions it asked from) and it has fewer
            than 32; 0 to never wait. One request then carries a busy
            stream's next frames; a quiet stream's frame is not held.
        client_expiry: Seconds a client id stays valid after the response
            that carried it.
        heartbeat: Seconds between an SSE stream's keep-alive events (each
            carries a fresh client id); under ``client_expiry``.
        max_body: Most bytes of a ``POST`` body.
        allowed_origins: Origin patterns as for
            :class:`~django_realtime.security.OriginValidator`; ``None``:
            the request's own origin and ``CSRF_TRUSTED_ORIGINS``.
        rate: Frames a second one client may post to this process on
            average (``None``: no limit); over it, 429 ``rate_limited``.
        burst: Frames it may post at once (default: ``rate``, at least 1).

    Raises:
        TypeError: ``consumer_class`` is not a :class:`StreamConsumer` subclass.
        ValueError: a time or size is out of range.
    """

    def __init__(
        self,
        consumer_class: type[StreamConsumer],
        *,
        poll_timeout: float = 25.0,
        poll_linger: float = 0.02,
        client_expiry: float = 60.0,
        heartbeat: float = 15.0,
        max_body: int = 64 * 1024,
        allowed_origins: Sequence[str] | None = None,
        rate: float | None = None,
        burst: float | None = None,
    ) -> None:
        if not (
            isinstance(consumer_class, type)
            and issubclass(consumer_class, StreamConsumer)
        ):
            raise TypeError(
                f"Expected a StreamConsumer subclass, got {consumer_class!r}."
            )
        if not 0 < heartbeat < client_expiry or not 0 < poll_timeout < client_expiry:
            raise ValueError(
                "Expected 0 < heartbeat < client_expiry and 0 < poll_timeout < "
                f"client_expiry, got heartbeat={heartbeat!r}, poll_timeout="
                f"{poll_timeout!r}, client_expiry={client_expiry!r}."
            )
        if not 0 <= poll_linger <= min(1.0, poll_timeout):
            raise ValueError(
                "Expected 0 <= poll_linger <= 1 and poll_linger <= poll_timeout, "
                f"got poll_linger={poll_linger!r}, poll_timeout={poll_timeout!r}."
            )
        if type(max_body) is not int or max_body < 1:
            raise ValueError(f"Expected max_body >= 1, got {max_body!r}.")
        self.consumer_class = consumer_class
        self.poll_timeout = poll_timeout
        self.poll_linger = poll_linger
        self.heartbeat = heartbeat
        self.max_body = max_body
        self.allowed_origins = (
            None if allowed_origins is None else list(allowed_origins)
        )
        name = f"{consumer_class.__module__}.{consumer_class.__qualname__}"
        self.signer = TokenSigner(name, client_expiry)
        self._csrf = CsrfViewMiddleware(_unused)
        self.rates = (
            None
            if rate is None
            else ClientRates(rate, burst or max(rate, 1.0), client_expiry)
        )

    # The views.

    async def post(self, request: HttpRequest, **route: Any) -> HttpResponse:
        """Answer one client frame (subscribe, unsubscribe, request, ping)."""
        try:
            self._check(request, "POST")
            length = request.headers.get("Content-Length") or "0"
            if length.isdigit() and int(length) > self.max_body:
                raise HttpRefusal(
                    413,
                    "too_large",
                    f"Expected a body of at most {self.max_body} bytes, got {length}.",
                )
            if self._csrf.process_view(request, _unused, (), {}) is not None:
                raise HttpRefusal(
                    403,
                    "csrf_failed",
                    "CSRF verification failed: send the CSRF token (the csrf of the "
                    "client event, or the csrftoken cookie) in the X-CSRFToken header.",
                )
            token = request.headers.get(CLIENT_HEADER)
            if not token:
                raise HttpRefusal(
                    400,
                    "client_unknown",
                    f"Expected the client id in the {CLIENT_HEADER} header, got "
                    "none: open the event stream or a poll first.",
                )
            try:
                body = request.body
            except RequestDataTooBig:
                raise HttpRefusal(
                    413, "too_large", "The body is over DATA_UPLOAD_MAX_MEMORY_SIZE."
                ) from None
            content = parse_body(body, self.max_body)
            scope = await _scope(request, route)
            client = self.signer.load(token, _binding(scope))
            self._check_rate(client)
            consumer = make_consumer(self.consumer_class, scope, client)
            await admit(consumer)
            frames, client = await answer(consumer, client, content)
        except HttpRefusal as exc:
            return self._refuse(request, exc)
        text = '{"client":' + json.dumps(self.signer.sign(client))
        text += ',"frames":[' + ",".join(frames) + "]}"
        return _json(200, text.encode())

    async def events(self, request: HttpRequest, **route: Any) -> HttpResponseBase:
        """Stream the client's frames as server-sent events."""
        try:
            resume = await self._resume(request, route)
        except HttpRefusal as exc:
            return self._refuse(request, exc)
        response = StreamingHttpResponse(
            self._event_stream(resume, self._csrf_token(request)),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache, no-store"
        # nginx: do not buffer this response.
        response["X-Accel-Buffering"] = "no"
        self._csrf.process_response(request, response)
        return response

    async def poll(self, request: HttpRequest, **route: Any) -> HttpResponse:
        """Return the client's frames once there are some, or after the timeout."""
        try:
            timeout = self._timeout(request.GET.get("timeout"))
            resume = await self._resume(request, route)
        except HttpRefusal as exc:
            return self._refuse(request, exc)
        frames: list[str] = []
        loop = asyncio.get_running_loop()
        # A new client (no id yet) gets its id at once.
        deadline = loop.time() + (timeout if request.GET.get("client") else 0.0)
        try:
            await resume.begin()
            frames = resume.frames()
            while not frames and resume.collector.closed is None:
                left = deadline - loop.time()
                if left <= 0:
                    break
                await resume.collector.wait(left)
                frames = resume.frames()
            if frames and resume.behind:
                frames += await self._linger(
                    resume, min(deadline, loop.time() + self.poll_linger), len(frames)
                )
        finally:
            await resume.stop()
        body: dict[str, Any] = {
            "client": self.signer.sign(resume.client),
            "csrf": self._csrf_token(request),
        }
        text = json.dumps(body)[:-1] + ',"frames":[' + ",".join(frames) + "]}"
        response = _json(200, text.encode())
        self._csrf.process_response(request, response)
        return response

    # Their parts.

    def _csrf_token(self, request: HttpRequest) -> str:
        """Return a CSRF token of the secret in the request's cookie, if any.

        Without ``CsrfViewMiddleware`` nothing has read the cookie: each
        response would set a new one, and a ``POST`` sent with the token
        of the previous response would fail.
        """
        if "CSRF_COOKIE" not in request.META:
            self._csrf.process_request(request)
        return get_token(request)

    @staticmethod
    async def _linger(resume: Resume, until: float, count: int) -> list[str]:
        """Return the frames that come by ``until``, or once there are enough."""
        loop = asyncio.get_running_loop()
        more: list[str] = []
        while count + len(more) < _ENOUGH and resume.collector.closed is None:
            left = until - loop.time()
            if left <= 0:
                break
            await resume.collector.wait(left)
            more += resume.frames()
        return more

    def _check(self, request: HttpRequest, method: str) -> None:
        if request.method != method:
            raise HttpRefusal(
                405,
                "method_not_allowed",
                f"Expected {method}, got {printable(str(request.method))}.",
            )
        origin = request.headers.get("Origin")
        if origin is None:
            return  # not a browser, or a same-origin GET
        if self.allowed_origins is not None:
            allowed = is_origin_allowed(origin, self.allowed_origins)
        else:
            scope = getattr(request, "scope", None) or {"headers": []}
            allowed = is_request_origin_allowed(
                origin, scope, HostRules.from_settings()
            )
        if not allowed:
            raise HttpRefusal(
                403,
                "origin_not_allowed",
                f"Origin {printable(origin)!r} is not allowed.",
            )

    def _check_rate(self, client: Client) -> None:
        rates = self.rates
        if rates is None or rates.take(client.id, time.monotonic()):
            return
        limit_stats.rate_limited_drops += 1
        raise HttpRefusal(
            429,
            "rate_limited",
            f"Over {rates.rate:g} frames a second (bursts of {rates.burst:g}): "
            "send this frame again later.",
        )

    def _timeout(self, value: str | None) -> float:
        if value is None:
            return self.poll_timeout
        try:
            timeout = float(value)
        except ValueError:
            timeout = -1.0
        if not 0 <= timeout <= self.poll_timeout:
            raise HttpRefusal(
                400,
                "bad_timeout",
                f"Expected a timeout of 0 to {self.poll_timeout:g} seconds, got "
                f"{printable(repr(value))}.",
            )
        return timeout

    async def _resume(self, request: HttpRequest, route: dict[str, Any]) -> Resume:
        self._check(request, "GET")
        scope = await _scope(request, route)
        binding = _binding(scope)
        token = request.GET.get("client")
        client = Client.new(binding) if not token else self.signer.load(token, binding)
        positions = parse_positions(request.GET.get("positions"), client.streams)
        consumer = make_consumer(self.consumer_class, scope, client)
        await admit(consumer)
        return await Resume.start(consumer, client, positions)

    async def _event_stream(self, resume: Resume, csrf: str) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()

        def client_event() -> bytes:
            data = {"client": self.signer.sign(resume.client), "csrf": csrf}
            return sse_event(json.dumps(data), "client")

        try:
            await resume.begin()
            yield b"retry: 5000\n\n" + client_event()
            told = loop.time()
            while True:
                await resume.collector.wait(self.heartbeat)
                frames = resume.frames()
                chunk = b"".join(sse_event(frame) for frame in frames)
                if loop.time() - told >= self.heartbeat:
                    chunk += client_event()
                    told = loop.time()
                if resume.collector.closed is not None:
                    code = json.dumps({"code": resume.collector.closed})
                    yield chunk + sse_event(code, "close")
                    return
                if chunk:
                    yield chunk
        finally:
            await resume.stop()

    def _refuse(self, request: HttpRequest, exc: HttpRefusal) -> HttpResponse:
        logger.info(
            "Refused a %s to %s with %d (%s): %s",
            printable(str(request.method)),
            printable(request.path),
            exc.status,
            exc.code,
            printable(exc.message),
        )
        return _json(exc.status, exc.body())
