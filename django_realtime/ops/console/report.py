"""What one process tells the ops page: its connections, streams and more.

:func:`report` builds the answer of this process: its host and pid,
whether it drains, its live connections (see
:mod:`django_realtime.ops.console.inventory`), the streams they subscribed
to with the store's view of each (newest position, publications kept), and
one entry per section added with :func:`add_section`. Every value is plain
data (str, int, float, bool, None, lists, dicts), so that it crosses any
channel layer.

:func:`add_section` is how a feature shows itself on the page without the
page knowing it (presence will): a section is a title and a function that
returns rows (dicts of the same keys), called in each process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from django_realtime.ops import drain
from django_realtime.ops.console.inventory import describe, inventory
from django_realtime.streams.positions import Position
from django_realtime.streams.registry import get_stream_store

__all__ = ["MAX_STREAMS", "Section", "add_section", "report", "sections", "whoami"]

logger = logging.getLogger(__name__)

#: The most streams a process reports on (the most subscribed first).
MAX_STREAMS = 100
#: Seconds a process spends reading the store for its report, at most.
STORE_TIME = 0.5

#: Returns the rows of a section in this process.
Section = Callable[[], Awaitable[list[dict[str, Any]]]]

_sections: dict[str, Section] = {}


def add_section(title: str, rows: Section) -> None:
    """Show ``title`` on the ops page, with the rows ``rows`` returns.

    ``rows`` is called in every process at each refresh and must be quick;
    its rows are dicts of plain data with the same keys (the columns).
    Adding a title again replaces its function.
    """
    _sections[title] = rows


def sections() -> list[str]:
    """Return the titles of the sections added, in the order they were added."""
    return list(_sections)


def whoami() -> tuple[str, int]:
    """Return this process's host name and pid, as the control group has them."""
    return socket.gethostname(), os.getpid()


async def report() -> dict[str, Any]:
    """Return this process's answer to the ops page."""
    host, pid = whoami()
    connections = [describe(record) for record in inventory.records()]
    subscribers: dict[str, int] = {}
    for connection in connections:
        for stream in connection["streams"]:
            subscribers[stream] = subscribers.get(stream, 0) + 1
    return {
        "host": host,
        "pid": pid,
        "draining": drain.is_draining(),
        "connections": connections,
        "streams": await _streams(subscribers),
        "sections": {title: await _section(rows) for title, rows in _sections.items()},
    }


async def _section(rows: Section) -> list[dict[str, Any]]:
    try:
        return await rows()
    except Exception:
        logger.exception("A section of the ops page failed.")
        return [{"error": "failed (see the server's log)"}]


async def _streams(subscribers: dict[str, int]) -> list[dict[str, Any]]:
    """Return the streams subscribed to here, with the store's view of each."""
    names = sorted(subscribers, key=lambda name: (-subscribers[name], name))
    rows: list[dict[str, Any]] = []
    try:
        store = get_stream_store()
    except Exception as exc:
        store = None
        problem = f"no store: {exc}"
    loop = asyncio.get_running_loop()
    until = loop.time() + STORE_TIME
    for name in names[:MAX_STREAMS]:
        row: dict[str, Any] = {
            "name": name,
            "subscribers": subscribers[name],
            "epoch": None,
            "offset": None,
            "kept": None,
            "error": None,
        }
        rows.append(row)
        if store is None:
            row["error"] = problem
            continue
        try:
            async with asyncio.timeout_at(until):
                await _read(store, row)
        except TimeoutError:
            row["error"] = "not read (out of time)"
        except Exception as exc:
            row["error"] = f"read failed: {exc}"
    return rows


async def _read(store: Any, row: dict[str, Any]) -> None:
    """Fill ``row`` with the stream's newest position and what is kept of it."""
    name = row["name"]
    newest = await store.read(name)
    row["epoch"], row["offset"] = newest.epoch, newest.offset
    count = store.policies(name).max_count
    start = 0 if count is None else max(0, newest.offset - count)
    window = await store.read(name, Position(newest.epoch, start))
    if window.recovered:
        row["kept"] = len(window.publications)
