"""What the PostgreSQL engine says over the wire, and how it reads errors.

Pure helpers around one psycopg connection, apart from the engine's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg

__all__ = ["first_line", "hint", "wait_for_notifications"]


async def wait_for_notifications(
    connection: psycopg.AsyncConnection[Any],
    interval: float,
    on_notify: Callable[[str, str], None],
) -> None:
    """Hand notifications to the hook until the connection fails.

    Waits on the socket itself: psycopg's ``notifies()`` wakes ten times
    a second even when nothing comes. An idle connection is checked
    with a query every ``interval`` seconds, so that one dropped
    without a word (a half-open TCP connection) is noticed.
    """
    loop = asyncio.get_running_loop()
    pgconn = connection.pgconn
    readable = asyncio.Event()
    while True:
        loop.add_reader(pgconn.socket, readable.set)
        try:
            async with asyncio.timeout(interval):
                await readable.wait()
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(pgconn.socket)
        if not readable.is_set():
            await connection.execute("SELECT 1")  # Notifies on the way too.
            continue
        readable.clear()
        pgconn.consume_input()  # Raises OperationalError once it is lost.
        encoding = connection.info.encoding
        while (notify := pgconn.notifies()) is not None:
            on_notify(notify.relname.decode(encoding), notify.extra.decode(encoding))


def first_line(error: BaseException) -> str:
    """Return the first line of ``error``'s message, for one-line logs."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def hint(error: psycopg.Error) -> str:
    """Return what to do about ``error``, if known, as a sentence to append."""
    if isinstance(error, psycopg.errors.UndefinedTable):
        return (
            " The layer's tables are missing: run 'python manage.py migrate' "
            "on this database."
        )
    return ""
