"""Ask running server processes to drain: ``manage.py drain``.

Server processes on other hosts or in other containers cannot be signalled,
so the command goes through the default channel layer: every server process
that has accepted a WebSocket listens in the :data:`~django_realtime.ops.
drain_control.CONTROL_GROUP` group (not with the in-memory layer, which
reaches no other process). The command sends one request to the group; each process it
selects (``--host``, ``--pid``; all without them) drains as on SIGTERM and,
unless ``--no-stop``, stops. The processes answer; the command prints who
did, and with ``--wait`` also how each drain ended.

``--signal`` sends SIGTERM to the ``--pid`` processes of this host instead,
which needs no layer; a process drains on it only if it has taken SIGTERM
over (``REALTIME["DRAIN"]["SIGNAL"]`` or ``drain.handle_sigterm()``), and
otherwise stops as its server does on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_realtime.exceptions import InvalidChannelLayerError
from django_realtime.layers import get_channel_layer
from django_realtime.layers.base import ChannelLayer
from django_realtime.ops.drain_control import CONTROL_GROUP

__all__ = ["Command"]


class Command(BaseCommand):
    """Make server processes close their WebSockets in batches, then stop."""

    help = (
        "Ask running server processes (through the default channel layer) to "
        "refuse new WebSockets, close the open ones with 1012 in batches and "
        "stop (django_realtime)."
    )
    leave_locale_alone = True
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """Take the processes to drain, the drain's parameters and the waits."""
        parser.add_argument(
            "--host",
            action="append",
            dest="hosts",
            default=[],
            metavar="NAME",
            help="Only processes on this host name (repeat for more; in "
            "Kubernetes, the pod's name).",
        )
        parser.add_argument(
            "--pid",
            action="append",
            dest="pids",
            type=int,
            default=[],
            help="Only processes with this pid (repeat for more).",
        )
        parser.add_argument(
            "--signal",
            action="store_true",
            help="Send SIGTERM to each --pid on this host instead of using the "
            "channel layer (a process that drains on SIGTERM, with "
            "REALTIME['DRAIN']['SIGNAL'] or drain.handle_sigterm(), drains with "
            "its settings, then stops; any other stops as its server does).",
        )
        parser.add_argument(
            "--no-stop",
            dest="stop",
            action="store_false",
            help="Accept connections again after the drain instead of stopping "
            "(to move clients off a process).",
        )
        parser.add_argument("--batch-size", type=int, help="Connections per batch.")
        parser.add_argument("--interval", type=float, help="Seconds between batches.")
        parser.add_argument(
            "--deadline", type=float, help="Seconds until the drain gives up."
        )
        parser.add_argument("--reason", help="The close reason.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=2.0,
            help="Seconds to wait for the processes to answer (default: 2).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="Wait for the processes that answered to finish draining.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Send the drain request, or the signals; print who answered."""
        if options["signal"]:
            self._signal(options["pids"])
            return
        for name in ("batch_size", "deadline", "timeout"):
            value = options[name]
            if value is not None and value <= 0:
                flag = "--" + name.replace("_", "-")
                raise CommandError(f"Expected {flag} > 0, got {value}.")
        if options["interval"] is not None and options["interval"] < 0:
            raise CommandError(f"Expected --interval >= 0, got {options['interval']}.")
        try:
            layer = get_channel_layer()
        except (InvalidChannelLayerError, ImproperlyConfigured) as exc:
            raise CommandError(f"The default channel layer is unusable: {exc}") from exc
        if layer is None or type(layer).__name__ == "InMemoryChannelLayer":
            raise CommandError(
                "The default channel layer cannot reach server processes (it is "
                f"{'missing' if layer is None else 'in-memory'}). Configure a Redis "
                "layer, or use --signal --pid PID on the server's host."
            )
        answered = asyncio.run(self._ask(layer, options))
        if not answered:
            raise CommandError(
                f"No server process answered within {options['timeout']:g} s. "
                "Processes listen once they have accepted a WebSocket; a process "
                "without connections can be stopped right away."
            )

    def _signal(self, pids: list[int]) -> None:
        if not pids:
            raise CommandError("Expected --pid with --signal, got none.")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError as exc:
                raise CommandError(f"Could not signal process {pid}: {exc}") from exc
            self.stdout.write(f"Sent SIGTERM to process {pid}.")

    async def _ask(self, layer: ChannelLayer, options: dict[str, Any]) -> int:
        """Send the request; print the answers; return how many processes answered."""
        reply_to = await layer.new_channel()
        request = {
            "type": "drain.request",
            "hosts": options["hosts"],
            "pids": options["pids"],
            "stop": options["stop"],
            "reply_to": reply_to,
        }
        for name in ("batch_size", "interval", "deadline", "reason"):
            if options[name] is not None:
                request[name] = options[name]
        await layer.group_send(CONTROL_GROUP, request)
        loop = asyncio.get_running_loop()
        started: dict[tuple[str, int], dict[str, Any]] = {}
        finished = 0
        until = window = loop.time() + options["timeout"]
        try:
            while loop.time() < until:
                try:
                    async with asyncio.timeout_at(until):
                        answer = await layer.receive(reply_to)
                except TimeoutError:
                    break
                who = (answer["host"], answer["pid"])
                name = f"{who[0]}:{who[1]}"
                if answer["type"] == "drain.started":
                    started[who] = answer
                    self.stdout.write(
                        f"Draining {name} ({answer['connections']} connections)."
                    )
                    if options["wait"]:
                        # The process gives up at its deadline; allow for it.
                        end = loop.time() + answer["deadline"] + options["timeout"]
                        until = max(until, end)
                elif answer["type"] == "drain.finished":
                    finished += 1
                    self.stdout.write(
                        f"{name} drained in {answer['elapsed']:.1f} s: closed "
                        f"{answer['closed']}, {answer['still_open']} still open."
                    )
                    if finished >= len(started):
                        # Every process that answered has finished: wait only
                        # for late answers.
                        until = window
        finally:
            close = getattr(layer, "close", None)
            if close is not None:
                await close()
        if options["wait"] and finished < len(started):
            self.stderr.write(
                f"{len(started) - finished} of {len(started)} processes did not "
                "report the end of their drain."
            )
        return len(started)
