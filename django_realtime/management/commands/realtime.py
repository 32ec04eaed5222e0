"""Watch, publish to and talk to streams and sockets: ``manage.py realtime``.

``realtime tail STREAM`` prints what a user would receive on a stream,
``realtime publish STREAM JSON`` publishes to one, and ``realtime connect
URL`` opens a WebSocket to a running server and lets one type frames. The
work is done in :mod:`django_realtime.ops.cli`; this module reads the
arguments. Exit codes: 0 done, 1 refused or failed, 2 invalid arguments.
"""

from __future__ import annotations

import sys
from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
)

from django_realtime.ops.cli import arguments
from django_realtime.ops.cli.connect import connect
from django_realtime.ops.cli.publish import publish_now
from django_realtime.ops.cli.tail import tail

__all__ = ["Command"]


def _lines(stream: OutputWrapper) -> Callable[[str], None]:
    """Return a writer of lines to ``stream`` that flushes each (for pipes)."""

    def write(line: str) -> None:
        stream.write(line)
        stream.flush()

    return write


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise ArgumentTypeError(f"expected seconds (0 or more), got {value!r}")
    return number


class Command(BaseCommand):
    """Tail, publish to and connect to streams and sockets from the shell."""

    help = (
        "Debug real-time code from the command line: 'tail' a stream as a user "
        "would receive it, 'publish' to a stream, 'connect' to a WebSocket and "
        "type frames (django_realtime). Exit codes: 0 done, 1 refused or "
        "failed, 2 invalid arguments."
    )
    leave_locale_alone = True
    requires_system_checks: list[str] = []
    # call_command(..., stdin=...) feeds `connect` without a terminal.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        """Take a subcommand and its arguments."""
        commands = parser.add_subparsers(
            dest="subcommand", metavar="{tail,publish,connect}", required=True
        )
        tail_parser = commands.add_parser(
            "tail",
            help="Print what a user would receive on a stream, until Ctrl-C.",
            description="Subscribe to STREAM through the project's own ASGI "
            "application, in this process, as USERNAME would (the consumer's "
            "connect() and authorize_stream() decide), and print each frame of "
            "the subscription as one JSON line: subscribed, then publication "
            "and lost frames. Positions and losses are noted on stderr; Ctrl-C "
            "stops and prints the position to resume from with --from.",
        )
        tail_parser.add_argument("stream", metavar="STREAM", help="The stream's name.")
        tail_parser.add_argument(
            "--from",
            dest="since",
            metavar="POSITION",
            help="Resume after this position (EPOCH:OFFSET, as printed): replay "
            "what came after it, then follow.",
        )
        tail_parser.add_argument(
            "--as-user",
            dest="username",
            metavar="USERNAME",
            help="Connect as this user (a session is made for the tail and "
            "deleted after); anonymous without it.",
        )
        tail_parser.add_argument(
            "--path",
            help="The WebSocket path a client of the stream connects to (such as "
            "/ws/chat/lobby/); by default the only route to a StreamConsumer "
            "in ASGI_APPLICATION.",
        )
        tail_parser.add_argument(
            "--origin",
            help="The Origin header (default: http:// and the first host of "
            "ALLOWED_HOSTS, or localhost).",
        )
        tail_parser.add_argument(
            "--count",
            type=_positive,
            metavar="N",
            help="Stop after N publications.",
        )
        publish_parser = commands.add_parser(
            "publish",
            help="Publish a JSON payload to a stream now; print its position.",
            description="Publish JSON to STREAM now (not held by a transaction) "
            "through the configured history store, and print the publication's "
            "position as EPOCH:OFFSET.",
        )
        publish_parser.add_argument(
            "stream", metavar="STREAM", help="The stream's name."
        )
        publish_parser.add_argument(
            "payload", metavar="JSON", help='The payload, as JSON: \'{"type": "note"}\''
        )
        connect_parser = commands.add_parser(
            "connect",
            help="Open a WebSocket to a running server; type frames, read replies.",
            description="Open a WebSocket to URL (ws://, wss://, or http:// and "
            "https:// converted), with the session of USERNAME and the origin of "
            "the server's own site. Each line of standard input is sent as a "
            "text frame (/binary HEX sends bytes, /close [CODE [REASON]] closes, "
            "// starts a text with /); each frame received is printed as 'text "
            "...' or 'binary HEX', and the close as 'close CODE REASON'. When "
            "the input ends, waits for the server to be quiet for --wait "
            "seconds, then closes. Needs websockets (the 'cli' extra).",
        )
        connect_parser.add_argument("url", metavar="URL", help="The WebSocket URL.")
        connect_parser.add_argument(
            "--user",
            dest="username",
            metavar="USERNAME",
            help="Log this user in to a new session (deleted after) and send its "
            "cookie; the server must share the session store and SECRET_KEY.",
        )
        connect_parser.add_argument(
            "--origin",
            help="The Origin header (default: the origin of URL's own site).",
        )
        connect_parser.add_argument(
            "--wait",
            type=_seconds,
            default=1.0,
            metavar="SECONDS",
            help="Once the input ends, close after this many seconds with no "
            "frame from the server (default: 1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the subcommand."""
        subcommand = options["subcommand"]
        stream = (
            arguments.stream_name(options["stream"])
            if subcommand in ("tail", "publish")
            else ""
        )
        if subcommand == "tail":
            since = options["since"]
            tail(
                stream,
                since=None if since is None else arguments.parse_position(since),
                username=options["username"],
                path=options["path"],
                origin=options["origin"],
                count=options["count"],
                out=_lines(self.stdout),
                note=_lines(self.stderr),
            )
        elif subcommand == "publish":
            data = arguments.parse_payload(options["payload"])
            position = publish_now(stream, data)
            if position is None:
                self.stderr.write(
                    f"Published to {stream}, but its history no longer holds the "
                    "publication: its position is unknown."
                )
            else:
                self.stdout.write(arguments.format_position(position))
        else:
            url, own_origin = arguments.websocket_address(options["url"])
            code = connect(
                url,
                origin=options["origin"] or own_origin,
                username=options["username"],
                stream=options.get("stdin") or sys.stdin,
                wait=options["wait"],
                out=_lines(self.stdout),
                note=_lines(self.stderr),
            )
            if code:
                raise CommandError(
                    "The server closed the connection with an error code.",
                    returncode=code,
                )
