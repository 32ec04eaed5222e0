"""uvicorn internals: the error of a send after the connection's close.

Once uvicorn has closed a WebSocket itself (a protocol error, a keepalive
timeout), a send raises a bare ``RuntimeError`` (not the ``OSError`` the
ASGI spec asks for a connection that has gone) whose message is the only
way to tell it from a bug: ``Unexpected ASGI message 'websocket.send',
after sending 'websocket.close'`` (followed by ``.`` or ``or response
already completed.``, depending on the implementation and version).

Checked: uvicorn 0.30.0 and 0.55.0, each of its WebSocket implementations
(:data:`WINDOW`). The message is matched whatever the version: if it is
reworded, the send's ``RuntimeError`` is not recognised and goes on to the
server, which logs it with its traceback: loud, never silent.
"""

from __future__ import annotations

from django_realtime._compat import Window

__all__ = ["SEND_AFTER_CLOSE", "WINDOW", "is_send_after_close"]

#: The uvicorn versions the message was checked against.
WINDOW = Window("uvicorn", (0, 30), (0, 56))

#: The part of uvicorn's message that every implementation shares.
SEND_AFTER_CLOSE = "after sending 'websocket.close'"


def is_send_after_close(exc: BaseException) -> bool:
    """Return whether ``exc`` is uvicorn's refusal of a send after its close."""
    return isinstance(exc, RuntimeError) and SEND_AFTER_CLOSE in str(exc)
