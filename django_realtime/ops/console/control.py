"""The ops page's questions to every server process, through the control group.

The page uses the group that ``manage.py drain`` sends to
(:mod:`django_realtime.ops.drain_control`): every server process that has
accepted a connection listens there, and answers on the reply channel a
request names. The messages, besides the drain's:

``ops.survey`` (page to the group)
    ``reply_to``. Each process answers ``ops.report``: its
    :func:`~django_realtime.ops.console.report.report`.
``ops.close`` (page to the group)
    ``hosts``, ``pids`` (one process), ``connection`` (its number there),
    ``reply_to``. The process answers ``ops.closed`` with ``host``, ``pid``
    and ``closed``: the connection as the survey shows it if a close was
    sent, else ``None``.

A drain is the drain's own ``drain.request``, for one process.

This process answers the page itself, without the layer: with the
in-memory layer (which reaches no other process) it is the only one; with
a layer that does, its answer through the layer is ignored. A process that
answered a previous survey but not this one, within the wait, is listed
as not answering (the page remembers whom it saw).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django_realtime.ops import drain, drain_control
from django_realtime.ops.console import inventory
from django_realtime.ops.console.report import report, whoami
from django_realtime.ops.drain_control import CONTROL_GROUP

__all__ = [
    "Closing",
    "Survey",
    "aclose_connection",
    "adrain_process",
    "asurvey",
    "install",
]

logger = logging.getLogger(__name__)

#: Seconds the page waits for the processes' answers.
WAIT = 1.0


@dataclass
class Survey:
    """What the processes answered.

    Attributes:
        processes: One :func:`~django_realtime.ops.console.report.report`
            per process that answered, this one first.
        silent: ``host:pid`` of the processes expected that did not answer.
        reaches_others: Whether the default channel layer reaches other
            processes (if not, only this one is listed).
    """

    processes: list[dict[str, Any]] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    reaches_others: bool = False


def install() -> None:
    """Answer the page's requests in the control group (idempotent)."""
    drain_control.add_handler("ops.survey", _answer_survey)
    drain_control.add_handler("ops.close", _answer_close)


async def _answer_survey(layer: Any, message: dict[str, Any]) -> None:
    reply_to = message.get("reply_to")
    if isinstance(reply_to, str):
        await layer.send(reply_to, {"type": "ops.report", **await report()})


async def _answer_close(layer: Any, message: dict[str, Any]) -> None:
    number = message.get("connection")
    closed = await inventory.close(number) if isinstance(number, int) else None
    host, pid = whoami()
    if closed is not None:
        logger.info("The ops page closed connection %d of this process.", number)
    reply_to = message.get("reply_to")
    if isinstance(reply_to, str):
        reply = {"type": "ops.closed", "host": host, "pid": pid, "closed": closed}
        await layer.send(reply_to, reply)


def name_of(host: str, pid: int) -> str:
    """Return how the page names a process: ``host:pid``."""
    return f"{host}:{pid}"


async def asurvey(expected: Iterable[str] = (), wait: float = WAIT) -> Survey:
    """Ask every process for its report; wait up to ``wait`` seconds for answers.

    Args:
        expected: ``host:pid`` of processes seen before: those that do not
            answer are listed in :attr:`Survey.silent`. The wait ends as
            soon as they have all answered (a process that never answered
            before and is slower than them shows at the next survey).
        wait: Seconds to wait for the other processes, at most.
    """
    expected = list(expected)
    here = whoami()
    survey = Survey(processes=[await report()])
    missing = set(expected) - {name_of(*here)}
    layer = drain_control.control_layer()
    if layer is not None:
        survey.reaches_others = True

        def enough(answer: dict[str, Any]) -> bool:
            missing.discard(name_of(answer.get("host", "?"), answer.get("pid", 0)))
            return bool(expected) and not missing

        for answer in await _ask(layer, {"type": "ops.survey"}, wait, enough):
            if (answer.get("host"), answer.get("pid")) != here:
                answer.pop("type", None)
                survey.processes.append(answer)
    seen = {name_of(p["host"], p["pid"]) for p in survey.processes}
    survey.silent = sorted(set(expected) - seen)
    survey.processes[1:] = sorted(
        survey.processes[1:], key=lambda p: (p["host"], p["pid"])
    )
    return survey


@dataclass(frozen=True)
class Closing:
    """The outcome of :func:`aclose_connection`.

    Attributes:
        answered: Whether the process answered.
        connection: The connection closed (as the survey shows it), or
            ``None`` if it was not open (or the process did not answer).
    """

    answered: bool
    connection: dict[str, Any] | None = None


async def aclose_connection(
    host: str, pid: int, number: int, wait: float = WAIT
) -> Closing:
    """Close connection ``number`` of process ``host``/``pid`` as an operator.

    The connection closes with
    :data:`~django_realtime.ops.console.inventory.CLOSE_BY_OPERATOR`.
    """
    if (host, pid) == whoami():
        return Closing(True, await inventory.close(number))
    layer = drain_control.control_layer()
    if layer is None:
        return Closing(False)
    request = {
        "type": "ops.close",
        "hosts": [host],
        "pids": [pid],
        "connection": number,
    }
    answers = await _ask(layer, request, wait, lambda answer: True)
    if not answers:
        return Closing(False)
    return Closing(True, answers[0].get("closed"))


async def adrain_process(
    host: str, pid: int, stop: bool, wait: float = WAIT
) -> int | None:
    """Start a drain of process ``host``/``pid`` (``stop``: stop it after).

    Returns:
        The connections open when the drain started; ``None`` if the
        process did not answer within ``wait`` seconds.
    """
    if (host, pid) == whoami():
        count = len(inventory.inventory)
        drain.start_drain(stop=stop)
        return count
    layer = drain_control.control_layer()
    if layer is None:
        return None
    request = {"type": "drain.request", "hosts": [host], "pids": [pid], "stop": stop}
    answers = await _ask(layer, request, wait, lambda answer: True)
    return int(answers[0].get("connections", 0)) if answers else None


async def _ask(
    layer: Any,
    request: dict[str, Any],
    wait: float,
    enough: Callable[[dict[str, Any]], bool],
) -> list[dict[str, Any]]:
    """Send ``request`` to the group; return the answers within ``wait`` s.

    Stops early at the first answer for which ``enough`` returns ``True``.
    """
    reply_to = await layer.new_channel()
    await layer.group_send(CONTROL_GROUP, {**request, "reply_to": reply_to})
    answers: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + wait):
            while True:
                answer = await layer.receive(reply_to)
                answers.append(answer)
                if enough(answer):
                    break
    except TimeoutError:
        pass
    return answers
