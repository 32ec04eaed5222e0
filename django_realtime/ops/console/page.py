"""What the ops page's templates show, from the processes' answers.

A pure function of a :class:`~django_realtime.ops.console.control.Survey`
and the time: the processes with their connections (ages, not
timestamps), the streams summed over the processes that subscribe to
them, and the added sections with a column naming each row's process.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from django_realtime.ops.console.control import Survey, name_of

__all__ = ["age", "page_context"]


def age(seconds: float) -> str:
    """Return ``seconds`` as the page writes a duration: ``3 s``, ``4 min``, ``2 h``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def page_context(survey: Survey, now: float | None = None) -> dict[str, Any]:
    """Return the templates' context for ``survey`` at ``now`` (default: now)."""
    now = time.time() if now is None else now
    processes = []
    streams: dict[str, dict[str, Any]] = {}
    sections: dict[str, list[dict[str, Any]]] = {}
    for index, answer in enumerate(survey.processes):
        name = name_of(answer["host"], answer["pid"])
        connections = [
            {
                **connection,
                "age": age(now - connection["since"]),
                "since_utc": datetime.datetime.fromtimestamp(
                    connection["since"], datetime.UTC
                ).strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
            for connection in answer["connections"]
        ]
        processes.append(
            {
                "name": name,
                "here": index == 0,
                "draining": answer["draining"],
                "connections": connections,
            }
        )
        for row in answer["streams"]:
            _add_stream(streams, row, name)
        for title, rows in answer.get("sections", {}).items():
            sections.setdefault(title, []).extend(
                {"process": name, **row} for row in rows
            )
    return {
        "processes": processes,
        "silent": survey.silent,
        "reaches_others": survey.reaches_others,
        "connection_count": sum(len(p["connections"]) for p in processes),
        "streams": sorted(
            streams.values(), key=lambda s: (-s["subscribers"], s["name"])
        ),
        "sections": [_section(title, rows) for title, rows in sections.items()],
        "seen": ",".join(p["name"] for p in processes),
    }


def _add_stream(
    streams: dict[str, dict[str, Any]], row: dict[str, Any], name: str
) -> None:
    """Add one process's view of a stream to the page's."""
    stream = streams.get(row["name"])
    if stream is None:
        stream = streams[row["name"]] = {
            "name": row["name"],
            "subscribers": 0,
            "by_process": [],
            "epoch": None,
            "offset": None,
            "kept": None,
            "errors": [],
        }
    stream["subscribers"] += row["subscribers"]
    stream["by_process"].append(f"{name}: {row['subscribers']}")
    if row["error"]:
        stream["errors"].append(f"{name}: {row['error']}")
    elif stream["offset"] is None or row["offset"] > stream["offset"]:
        # Processes read at slightly different moments: the newest wins.
        stream["epoch"], stream["offset"] = row["epoch"], row["offset"]
        stream["kept"] = row["kept"]


def _section(title: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a section as a table: its columns, and its rows as lists of cells."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    cells = [[row.get(column, "") for column in columns] for row in rows]
    return {"title": title, "columns": columns, "rows": cells}
