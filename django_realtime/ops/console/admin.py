"""The ops page in the Django admin: live connections, streams, and actions.

Registered on ``admin.site`` for the :class:`~django_realtime.models.
RealtimeOps` model (no table) when ``django.contrib.admin`` is installed,
it appears on the admin index under "Django Realtime" for staff users with
a permission of it:

- ``django_realtime.view_realtime_ops``: the page, its fragment (what the
  page reloads every few seconds) and its JSON;
- ``django_realtime.change_realtime_ops``: also the actions, closing one
  connection and draining one process (POST, with the CSRF token). Each
  action writes an entry in the admin log (``LogEntry``).

Anonymous users and users who are not staff go to the admin's login page;
staff without the permission get 403.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from django_realtime.models import RealtimeOps
from django_realtime.ops.console import control
from django_realtime.ops.console.page import page_context

__all__ = ["RealtimeOpsAdmin", "register"]

logger = logging.getLogger(__name__)

VIEW_PERMISSION = "django_realtime.view_realtime_ops"
CHANGE_PERMISSION = "django_realtime.change_realtime_ops"


class RealtimeOpsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The ops page, in place of the model's change list."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Return whether the user may see the page."""
        return request.user.has_perm(VIEW_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Return whether the user may close connections and drain processes."""
        return request.user.has_perm(CHANGE_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Return ``False``: there is nothing to add."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Return ``False``: there is nothing to delete."""
        return False

    def get_urls(self) -> list[URLPattern]:
        """Return the page, its fragment and JSON, and the actions."""
        wrap = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", wrap(self.page_view), name=f"{name}_changelist"),
            path("fragment/", wrap(self.fragment_view), name=f"{name}_fragment"),
            path("data.json", wrap(self.data_view), name=f"{name}_data"),
            path("close/", wrap(self.close_view), name=f"{name}_close"),
            path("drain/", wrap(self.drain_view), name=f"{name}_drain"),
            # The admin log links its entries here: back to the page.
            path("<path:object_id>/", wrap(self.back_view), name=f"{name}_change"),
        ]

    # -- the page --------------------------------------------------------------

    def page_view(self, request: HttpRequest) -> HttpResponse:
        """Render the page."""
        context = self._context(request)
        context.update(self.admin_site.each_context(request))
        context["title"] = "Real-time ops"
        return TemplateResponse(request, "django_realtime/ops/console.html", context)

    def fragment_view(self, request: HttpRequest) -> HttpResponse:
        """Render the tables alone, for the page to replace its own."""
        context = self._context(request)
        return TemplateResponse(request, "django_realtime/ops/tables.html", context)

    def data_view(self, request: HttpRequest) -> HttpResponse:
        """Answer what the processes answered, as JSON."""
        self._require(request, VIEW_PERMISSION)
        survey = async_to_sync(control.asurvey)(_expected(request))
        return JsonResponse(
            {
                "processes": survey.processes,
                "silent": survey.silent,
                "reaches_others": survey.reaches_others,
            }
        )

    def back_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send a link of the admin log back to the page."""
        return redirect(self._page_url())

    def _context(self, request: HttpRequest) -> dict[str, Any]:
        self._require(request, VIEW_PERMISSION)
        survey = async_to_sync(control.asurvey)(_expected(request))
        return {
            **page_context(survey),
            "opts": self.opts,
            "can_act": self.has_change_permission(request),
            "fragment_url": reverse(
                f"{self.admin_site.name}:django_realtime_realtimeops_fragment"
            ),
            "close_url": reverse(
                f"{self.admin_site.name}:django_realtime_realtimeops_close"
            ),
            "drain_url": reverse(
                f"{self.admin_site.name}:django_realtime_realtimeops_drain"
            ),
        }

    # -- the actions -----------------------------------------------------------

    def close_view(self, request: HttpRequest) -> HttpResponse:
        """Close one connection of one process (POST: process, connection)."""
        return self._act(request, self._close)

    def drain_view(self, request: HttpRequest) -> HttpResponse:
        """Drain one process (POST: process, and ``stop`` to stop it after)."""
        return self._act(request, self._drain)

    def _act(self, request: HttpRequest, action: Any) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._require(request, CHANGE_PERMISSION)
        try:
            host, pid = _process(request.POST.get("process", ""))
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            action(request, host, pid)
        return HttpResponseRedirect(self._page_url())

    def _close(self, request: HttpRequest, host: str, pid: int) -> None:
        try:
            number = int(request.POST.get("connection", ""))
        except ValueError:
            messages.error(request, "Expected a connection number, got none.")
            return
        target = f"connection {number} of {host}:{pid}"
        closing = async_to_sync(control.aclose_connection)(host, pid, number)
        if not closing.answered:
            messages.error(request, f"{host}:{pid} did not answer: {target} is open.")
            return
        if closing.connection is None:
            messages.warning(request, f"{target.capitalize()} was not open any more.")
            return
        about = closing.connection
        text = (
            f"Closed the {about['transport']} connection of {about['user']} "
            f"to {about['path']}."
        )
        self._log(request, f"{host}:{pid}:{number}", target, text)
        messages.success(request, f"Closed {target}.")

    def _drain(self, request: HttpRequest, host: str, pid: int) -> None:
        stop = request.POST.get("stop") == "1"
        count = async_to_sync(control.adrain_process)(host, pid, stop)
        target = f"{host}:{pid}"
        if count is None:
            messages.error(request, f"{target} did not answer: it is not draining.")
            return
        then = "then stop" if stop else "then accept connections again"
        self._log(
            request,
            target,
            f"process {target}",
            f"Drained ({count} connections open; {then}).",
        )
        messages.success(request, f"{target} is draining {count} connections ({then}).")

    def _log(self, request: HttpRequest, object_id: str, name: str, text: str) -> None:
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type=ContentType.objects.get_for_model(
                RealtimeOps, for_concrete_model=False
            ),
            object_id=object_id,
            object_repr=name[:200],
            action_flag=CHANGE,
            change_message=text,
        )
        logger.info("%s (ops page, user %s): %s", name, request.user, text)

    # -- helpers ---------------------------------------------------------------

    def _require(self, request: HttpRequest, permission: str) -> None:
        if not request.user.has_perm(permission):
            raise PermissionDenied

    def _page_url(self) -> str:
        return reverse(f"{self.admin_site.name}:django_realtime_realtimeops_changelist")


def _expected(request: HttpRequest) -> list[str]:
    """Return the processes the page saw before (``?seen=host:pid,...``)."""
    return [name for name in request.GET.get("seen", "").split(",") if name]


def _process(text: str) -> tuple[str, int]:
    """Parse ``host:pid``."""
    host, _, pid = text.rpartition(":")
    if not host or not pid.isdigit():
        raise ValueError(f"Expected a process as host:pid, got {text!r}.")
    return host, int(pid)


def register(site: admin.AdminSite = admin.site) -> None:
    """Put the ops page on ``site`` (idempotent)."""
    if not site.is_registered(RealtimeOps):
        site.register(RealtimeOps, RealtimeOpsAdmin)
