"""``manage.py testecho``: hold many WebSocket connections to an echo server.

The command is a thin shell: it checks the options, raises the open-file
limit, picks source addresses and prints; :mod:`example_project.c10k.runner`
runs the clients and :mod:`example_project.c10k.report` keeps the counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import resource
import time
from argparse import ArgumentParser, ArgumentTypeError
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from example_project.c10k.plan import (
    MIN_SIZE,
    parse_port_range,
    plan_fd_limit,
    source_addresses_needed,
)
from example_project.c10k.report import Failure, LoadStats
from example_project.c10k.runner import LoadConfig, run

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default range, 32768-60999, where the file cannot be read.
DEFAULT_PORTS = 28_232
# How often the progress line is redrawn on a terminal.
TTY_REFRESH = 0.25


def _at_least(minimum: float, kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < minimum:
            raise ArgumentTypeError(f"expected at least {minimum}, got {text}")
        return value

    return parse


def _positive(text: str) -> float:
    value = _at_least(0, float)(text)
    if value <= 0:
        raise ArgumentTypeError(f"expected more than 0, got {text}")
    return float(value)


def _available_ports() -> int:
    try:
        return parse_port_range(PORT_RANGE_FILE.read_text())
    except (OSError, ValueError):
        return DEFAULT_PORTS


class Command(BaseCommand):
    """Open many echo connections over a ramp, hold them, and report."""

    help = (
        "Load-test a WebSocket echo endpoint: CLIENTS connections start over "
        "RAMP seconds, each sends MESSAGES echoes spread until the end of the "
        "HOLD and checks the replies, all stay connected until the end of the "
        "hold. Prints progress, every failure and a summary; exits with 1 if "
        "any client failed."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Add the options of the run."""
        parser.add_argument(
            "--url",
            default="ws://127.0.0.1:8000/ws/c10k/echo/",
            help="The echo endpoint (default: %(default)s).",
        )
        parser.add_argument(
            "--clients",
            type=_at_least(1, int),
            default=10_000,
            help="How many clients to start (default: %(default)s).",
        )
        parser.add_argument(
            "--ramp",
            type=_at_least(0, float),
            default=20.0,
            help="Seconds over which the clients start; 0 starts them all at "
            "once (default: %(default)s).",
        )
        parser.add_argument(
            "--hold",
            type=_at_least(0, float),
            default=10.0,
            help="Seconds all connections stay open after the ramp "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--messages",
            type=_at_least(0, int),
            default=3,
            help="Echoes per client (default: %(default)s).",
        )
        parser.add_argument(
            "--size",
            type=_at_least(MIN_SIZE, int),
            default=64,
            help="Characters per echo message (default: %(default)s).",
        )
        parser.add_argument(
            "--source-addresses",
            type=_at_least(1, int),
            default=None,
            metavar="N",
            help="Spread the connections over N source addresses, 127.0.0.1 "
            "to 127.0.0.N; by default as many as the ephemeral port range "
            "needs for --clients.",
        )
        parser.add_argument(
            "--timeout",
            type=_positive,
            default=10.0,
            help="Seconds to wait for a handshake, an echo or a close "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--interval",
            type=_positive,
            default=1.0,
            help="Seconds between progress lines when the output is not a "
            "terminal (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the clients and report; fail if any client failed.

        Raises:
            CommandError: The options cannot work, or a client failed.
        """
        config = self._config(options)
        self._raise_fd_limit(config.clients, options["verbosity"])
        tty = self.stdout.isatty()
        if tty:
            config = dataclasses.replace(config, interval=TTY_REFRESH)
        self.stdout.write(
            f"{_count(config.clients, 'client')} to {config.url}: starting over "
            f"{config.ramp:g} s, holding {config.hold:g} s, "
            f"{_count(config.messages, 'echo', 'echoes')} of {config.size} "
            "characters each, from "
            f"{_count(config.source_addresses, 'source address', 'source addresses')}."
        )
        stats = LoadStats(
            config.clients, config.messages, time.monotonic(), config.ramp
        )

        def on_progress(now: float) -> None:
            line = stats.progress_line(now)
            if tty:
                self.stdout.write(f"\r{line}\x1b[K", ending="")
                self.stdout.flush()
            else:
                self.stdout.write(line)

        def on_failure(failure: Failure) -> None:
            self.stdout.write(f"\r\x1b[K{failure}" if tty else str(failure))

        interrupted = False
        try:
            asyncio.run(
                run(config, stats, on_failure=on_failure, on_progress=on_progress)
            )
        except KeyboardInterrupt:
            interrupted = True
        if tty:
            self.stdout.write("")
        for line in stats.summary():
            self.stdout.write(line)
        if interrupted:
            raise CommandError("Interrupted before the end of the run.")
        if stats.failed:
            raise CommandError(f"{stats.failed} of {config.clients} clients failed.")

    def _config(self, options: dict[str, Any]) -> LoadConfig:
        url = options["url"]
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise CommandError(f"Expected --url ws://host:port/path/, got {url!r}.")
        clients = options["clients"]
        ports = _available_ports()
        needed = source_addresses_needed(clients, ports)
        loopback = _is_ipv4_loopback(parts.hostname)
        addresses = options["source_addresses"] or (needed if loopback else 1)
        if addresses > 254:
            raise CommandError(
                f"Expected at most 254 source addresses (127.0.0.1 to "
                f"127.0.0.254), got {addresses}."
            )
        if addresses < needed:
            self.stderr.write(
                f"{clients} clients need {needed} source addresses: each "
                "connection takes an ephemeral port, net.ipv4.ip_local_port_range "
                f"has {ports}, and past half of them on one source address "
                "connect() slows down, past all of them it fails with "
                "EADDRNOTAVAIL."
            )
        if addresses > 1 and not loopback:
            raise CommandError(
                "Several source addresses are 127.0.0.x addresses, so they "
                "reach only a server on an IPv4 loopback address such as "
                f"127.0.0.1, not {parts.hostname!r}: use --source-addresses 1, "
                "or several client machines."
            )
        return LoadConfig(
            url=url,
            clients=clients,
            ramp=options["ramp"],
            hold=options["hold"],
            messages=options["messages"],
            size=options["size"],
            timeout=options["timeout"],
            source_addresses=addresses,
            interval=options["interval"],
        )

    def _raise_fd_limit(self, clients: int, verbosity: int) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        plan = plan_fd_limit(clients, soft, hard)
        if plan.problem is not None:
            raise CommandError(plan.problem)
        if plan.soft is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (plan.soft, hard))
            if verbosity > 0:
                self.stdout.write(
                    f"Raised the open-file limit from {soft} to {plan.soft}."
                )


def _is_ipv4_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def _count(number: int, one: str, many: str = "") -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"
