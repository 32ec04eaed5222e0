"""``manage.py realtime connect``: a WebSocket client for the command line.

:func:`connect` opens a WebSocket to a running server, optionally with the
session of a user logged in for the occasion (:mod:`.login`: the server
must share the project's session store and ``SECRET_KEY``) and the origin
of the server's own site. Each line read from the input becomes a frame
(:func:`parse_line`), and every frame the server sends is written as it
arrives (:func:`describe`), then how the connection closed. The input may
be a terminal or a pipe: when it ends, the client waits until the server
has been quiet for ``wait`` seconds, then closes with 1000.

It needs the ``websockets`` library (the ``cli`` extra):
``pip install "django-realtime-framework[cli]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from django.core.management.base import CommandError

from django_realtime.ops.cli.arguments import FAILED, USAGE_ERROR
from django_realtime.ops.cli.login import UserSession, open_session
from django_realtime.ops.logs import printable

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["Outgoing", "connect", "describe", "parse_line"]

Write = Callable[[str], None]

_HELP_LINE = (
    "One frame per line: text as typed; /binary HEX; /close [CODE [REASON]]; "
    "//... for a text starting with /. End with Ctrl-D (Ctrl-C stops at once)."
)


@dataclass(frozen=True)
class Outgoing:
    """What one input line asks for: a text or binary frame, or the close.

    Attributes:
        text: A text frame's text.
        data: A binary frame's bytes.
        close: The close code and reason.
    """

    text: str | None = None
    data: bytes | None = None
    close: tuple[int, str] | None = None


def parse_line(line: str) -> Outgoing | None:
    """Return what the input ``line`` asks for; ``None`` for an empty line.

    - ``/binary 68 65 6c``: a binary frame, its bytes in hexadecimal;
    - ``/close``, ``/close 4000``, ``/close 4000 done``: close the
      connection with that code (1000 by default) and reason;
    - ``//text``: a text frame ``/text``;
    - anything else: a text frame, the line without its line ending.

    Raises:
        ValueError: a ``/`` command that is not one of those, or whose
            arguments are not valid; the message says what was expected.
    """
    line = line.rstrip("\r\n")
    if not line:
        return None
    if line.startswith("//") or not line.startswith("/"):
        return Outgoing(text=line[1:] if line.startswith("//") else line)
    command, _, rest = line.partition(" ")
    if command == "/binary":
        try:
            return Outgoing(data=bytes.fromhex(rest))
        except ValueError:
            raise ValueError(
                f"Expected /binary and hexadecimal bytes (/binary 68 69), got {line!r}."
            ) from None
    if command == "/close":
        code_text, _, reason = rest.strip().partition(" ")
        if not code_text:
            return Outgoing(close=(1000, ""))
        if not code_text.isdigit() or not (
            int(code_text) == 1000 or 3000 <= int(code_text) <= 4999
        ):
            raise ValueError(
                "Expected /close with a code of 1000 or 3000 to 4999 and a "
                f"reason, got {line!r}."
            )
        return Outgoing(close=(int(code_text), reason))
    raise ValueError(
        f"Expected /binary HEX, /close [CODE [REASON]] or // for a text that "
        f"starts with /, got {printable(line)!r}."
    )


def describe(data: str | bytes) -> str:
    """Return the output line of a frame received: ``text ...`` or ``binary HEX``."""
    if isinstance(data, str):
        return f"text {data}"
    return f"binary {data.hex()}"


def _read_lines(
    stream: IO[str], loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    """Hand ``stream``'s lines to ``lines`` on ``loop``, then ``None`` (in a thread)."""

    def hand(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are done
            loop.call_soon_threadsafe(lines.put_nowait, line)

    try:
        for line in stream:
            hand(line)
    except (OSError, ValueError):  # closed under us
        pass
    finally:
        hand(None)


async def _open(
    url: str, origin: str, cookie: str | None, who: str
) -> ClientConnection:
    try:
        from websockets.asyncio.client import connect as ws_connect
        from websockets.datastructures import Headers
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.typing import Origin
    except ImportError:
        raise CommandError(
            "realtime connect needs the websockets library: "
            'pip install "django-realtime-framework[cli]".',
            returncode=FAILED,
        ) from None
    headers = Headers()
    if cookie is not None:
        headers["Cookie"] = cookie
    try:
        return await ws_connect(
            url, origin=Origin(origin), additional_headers=headers, max_size=None
        )
    except InvalidStatus as exc:
        response = exc.response
        raise CommandError(
            f"The server refused the WebSocket handshake of {who} with HTTP "
            f"{response.status_code} {response.reason_phrase}: the origin "
            f"({origin}), the user or the path was refused; see the server's log.",
            returncode=FAILED,
        ) from None
    except InvalidURI as exc:
        raise CommandError(str(exc), returncode=USAGE_ERROR) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise CommandError(
            f"Could not open a WebSocket to {url}: {exc}", returncode=FAILED
        ) from None


async def _talk(
    url: str,
    origin: str,
    cookie: str | None,
    who: str,
    stream: IO[str],
    wait: float,
    out: Write,
    note: Write,
) -> int:
    from websockets.exceptions import ConnectionClosed

    websocket = await _open(url, origin, cookie, who)
    note(f"Connected to {url} as {who}. {_HELP_LINE}")
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(
        target=_read_lines, args=(stream, loop, lines), daemon=True
    ).start()
    heard = asyncio.Event()

    async def receive() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in websocket:
                out(describe(data))
                heard.set()

    receiver = asyncio.create_task(receive())
    try:
        while not receiver.done():
            getting = asyncio.ensure_future(lines.get())
            await asyncio.wait({getting, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                break
            line = getting.result()
            if line is None:
                await _quiet(receiver, heard, wait)
                await websocket.close()
                break
            try:
                outgoing = parse_line(line)
            except ValueError as exc:
                note(str(exc))
                continue
            if outgoing is None:
                continue
            if outgoing.close is not None:
                code, reason = outgoing.close
                note(f"Closing with {code} {reason}".rstrip() + ".")
                await websocket.close(code, reason)
                break
            with contextlib.suppress(ConnectionClosed):
                await websocket.send(
                    outgoing.text if outgoing.text is not None else outgoing.data or b""
                )
        await receiver
    finally:
        receiver.cancel()
        await websocket.close()
    return _closed(websocket, out)


async def _quiet(
    receiver: asyncio.Task[None], heard: asyncio.Event, wait: float
) -> None:
    """Return once nothing has come for ``wait`` seconds, or the connection ended."""
    while not receiver.done():
        heard.clear()
        hearing = asyncio.ensure_future(heard.wait())
        done, _ = await asyncio.wait({hearing, receiver}, timeout=wait)
        hearing.cancel()
        if not done:
            return


def _closed(websocket: ClientConnection, out: Write) -> int:
    """Write the server's close frame; return the exit code."""
    protocol = websocket.protocol
    received = protocol.close_rcvd
    if received is None:
        out("close 1006 (the connection ended without a close frame)")
        return FAILED
    out(f"close {received.code} {received.reason}".rstrip())
    server_first = bool(protocol.close_rcvd_then_sent)
    if not server_first or received.code in (1000, 1001):
        return 0
    return FAILED


def connect(
    url: str,
    *,
    origin: str,
    username: str | None,
    stream: IO[str],
    wait: float,
    out: Write,
    note: Write,
) -> int:
    """Talk to the WebSocket at ``url``: lines of ``stream`` in, frames out.

    Args:
        url: The ``ws://`` or ``wss://`` URL (already converted).
        origin: The ``Origin`` header to send.
        username: Log this user in and send the session's cookie (``None``:
            no cookie).
        stream: Where the lines to send come from (standard input).
        wait: Seconds of quiet to wait for replies once ``stream`` ends.
        out: Write one line of output (frames received, the close).
        note: Write one line for people.

    Returns:
        The exit code: 0, or :data:`~.arguments.FAILED` when the server
        closed the connection with a code other than 1000 and 1001 (or
        without a close frame).

    Raises:
        CommandError: no such user, the websockets library is missing, the
            connection could not be opened or the handshake was refused.
    """
    session: UserSession | None = None
    if username is not None:
        session = open_session(username)
    who = username or "an anonymous user"
    try:
        return asyncio.run(
            _talk(
                url,
                origin,
                None if session is None else session.cookie,
                who,
                stream,
                wait,
                out,
                note,
            )
        )
    except KeyboardInterrupt:
        note("Interrupted: the connection is closed.")
        return 0
    finally:
        if session is not None:
            session.close()
