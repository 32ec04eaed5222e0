"""The ops page in the Django admin: who is connected, to what, and actions.

Every server process keeps an inventory of its live connections
(:mod:`~django_realtime.ops.console.inventory`) and answers the page's
questions in the drain's control group
(:mod:`~django_realtime.ops.console.control`); the page itself
(:mod:`~django_realtime.ops.console.admin`) asks them all, shows what they
answered (:mod:`~django_realtime.ops.console.page`), and closes a
connection or drains a process on a staff user's request. Features add
sections to the page with
:func:`~django_realtime.ops.console.report.add_section`.

``AppConfig.ready()`` calls :func:`install`, and registers the page on
``admin.site`` when ``django.contrib.admin`` is installed.
"""

from __future__ import annotations

from django_realtime.ops.console import control, inventory

__all__ = ["install"]


def install() -> None:
    """Follow this process's connections and answer the page (idempotent)."""
    inventory.install()
    control.install()
