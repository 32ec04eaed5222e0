"""Make client-supplied values safe to put in a log line.

A path, a header, a stream or message type name or a frame excerpt comes
from the client. Logged as it is, a newline in it starts a forged log line,
and a megabyte of it fills the log. :func:`printable` escapes control
characters (as Django escapes request paths in its own log lines) and cuts
the value to a bounded length. Every log call that includes such a value
passes it through :func:`printable`.
"""

from __future__ import annotations

__all__ = ["EXCERPT_LIMIT", "printable"]

#: Characters of a client value kept in a log line or an error message.
EXCERPT_LIMIT = 200


def printable(value: object, limit: int = EXCERPT_LIMIT) -> str:
    """Return ``value`` as text with control characters escaped, at most ``limit`` long.

    Text is escaped with ``unicode_escape`` (a newline becomes ``\\n``, an
    escape character ``\\x1b``), bytes are shown escaped the same way, and
    anything else is formatted with ``str()`` first. A value longer than
    ``limit`` characters (after escaping) is cut and ends with ``...`` and
    the number of characters left out.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value[: limit + 1]).decode("latin-1")
        total = len(value)
    else:
        text = value if isinstance(value, str) else str(value)
        total = len(text)
        text = text[: limit + 1]
    if not text.isprintable() or "\\" in text:
        text = text.encode("unicode_escape").decode("ascii")
    if len(text) > limit or total > limit + 1:
        return f"{text[:limit]}... ({total} characters)"
    return text
