"""Django application configuration for django_realtime."""

from __future__ import annotations

from django.apps import AppConfig, apps


class RealtimeConfig(AppConfig):
    """Register django_realtime's system checks and commands."""

    name = "django_realtime"
    verbose_name = "Django Realtime"

    def ready(self) -> None:
        from django_realtime import checks  # noqa: F401  (registers the checks)
        from django_realtime.conf import get_setting
        from django_realtime.ops import console, drain
        from django_realtime.streams import checks as _stream_checks  # noqa: F401

        drain.install()
        if apps.is_installed("django.contrib.admin"):
            # Only the admin's page reads the inventory: without it, no
            # connection pays for being listed.
            console.install()
            from django_realtime.ops.console import admin, report
            from django_realtime.presence.api import ops_rows

            admin.register()
            report.add_section("Presence", ops_rows)
        if get_setting("METRICS"):
            from django_realtime.ops import metrics

            metrics.enable()
