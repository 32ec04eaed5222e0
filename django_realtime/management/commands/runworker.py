"""Run background tasks: ``manage.py runworker CHANNEL [CHANNEL ...]``.

The command receives on the named channels of a channel layer and feeds each
channel's messages to one instance of ``ASGI_APPLICATION`` with the scope
``{"type": "channel", "channel": name}`` (route them with
:class:`~django_realtime.routing.ChannelNameRouter`). SIGINT or SIGTERM stops
receiving, lets messages already received finish for up to
``--shutdown-timeout`` seconds, and exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_realtime.exceptions import InvalidChannelLayerError
from django_realtime.layers import DEFAULT_CHANNEL_LAYER, get_channel_layer
from django_realtime.routing import get_default_application
from django_realtime.streams.relay import start_relaying
from django_realtime.worker import Worker

__all__ = ["Command"]

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """Feed messages from channel layer channels to ``ASGI_APPLICATION``."""

    help = (
        "Receive on channel layer channels and run ASGI_APPLICATION for each "
        "message, with a 'channel' scope (django_realtime)."
    )
    leave_locale_alone = True
    #: The worker class; a subclass may change how messages are dispatched.
    worker_class = Worker

    def add_arguments(self, parser: CommandParser) -> None:
        """Take the channel names, ``--layer`` and ``--shutdown-timeout``."""
        parser.add_argument("channels", nargs="+", help="Channels to receive on.")
        parser.add_argument(
            "--layer",
            default=DEFAULT_CHANNEL_LAYER,
            help="CHANNEL_LAYERS alias to receive from (default: 'default').",
        )
        parser.add_argument(
            "--max-pending",
            type=int,
            default=0,
            help=(
                "Messages to take from each channel ahead of the one being "
                "handled (default: 0; the rest wait in the layer for any "
                "worker)."
            ),
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=5.0,
            help=(
                "Seconds to let received messages finish after SIGINT or "
                "SIGTERM (default: 5)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the worker and run it until a signal stops it."""
        alias: str = options["layer"]
        try:
            layer = get_channel_layer(alias)
        except (InvalidChannelLayerError, ImproperlyConfigured) as exc:
            raise CommandError(f"Channel layer {alias!r} is unusable: {exc}") from exc
        if layer is None:
            configured = getattr(settings, "CHANNEL_LAYERS", None)
            aliases = sorted(configured) if isinstance(configured, dict) else []
            raise CommandError(
                f"runworker needs a channel layer, but CHANNEL_LAYERS has no "
                f"{alias!r} alias (configured: {aliases or 'none'}). Add it to "
                "CHANNEL_LAYERS or pass --layer with a configured alias."
            )
        if type(layer).__name__ == "InMemoryChannelLayer":
            self.stderr.write(
                self.style.WARNING(
                    f"Channel layer {alias!r} is in-memory: only this process "
                    "can send to it. Use channels_redis for a separate worker."
                )
            )
        try:
            application = get_default_application()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        worker = self.worker_class(
            application,
            options["channels"],
            layer,
            shutdown_timeout=options["shutdown_timeout"],
            max_pending=options["max_pending"],
        )
        self._verbosity = verbosity = int(options["verbosity"])
        if verbosity >= 1:
            self.stdout.write(
                f"Worker receiving on {', '.join(worker.channels)} from channel "
                f"layer {alias!r}. Quit with CONTROL-C."
            )
            self.stdout.flush()
        asyncio.run(self._run(worker))
        if verbosity >= 1:
            self.stdout.write("Worker stopped.")

    async def _run(self, worker: Worker) -> None:
        """Run ``worker``, stopping it on SIGINT or SIGTERM."""
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            logger.info("Worker got %s; finishing received messages", name)
            if self._verbosity >= 1:
                self.stdout.write(
                    f"Got {name}; finishing received messages (up to "
                    f"{worker.shutdown_timeout:g}s)."
                )
                self.stdout.flush()
            worker.stop()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
            except (NotImplementedError, RuntimeError):
                # Not on this platform, or not in the main thread: the
                # default handlers stay.
                continue
            installed.append(signum)
        # Relay stream outbox rows that dead publishers left behind.
        relaying = start_relaying()
        try:
            await worker.run()
        finally:
            if relaying is not None:
                relaying.cancel()
            for signum in installed:
                loop.remove_signal_handler(signum)
