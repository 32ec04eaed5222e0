"""Jobs in Django's admin."""

from django.contrib import admin

from example_project.jobs.models import Job

__all__ = ["JobAdmin"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not generic at run time
    """List jobs by owner and status, newest first."""

    list_display = ["created_at", "owner", "kind", "status", "progress", "finished_at"]
    list_filter = ["status", "kind"]
    search_fields = ["owner__username", "error"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    readonly_fields = ["created_at", "queued_at", "started_at", "updated_at", "version"]
