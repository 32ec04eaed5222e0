"""The chat's rooms and messages in Django's admin."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from example_project.chat.models import Message, Room

__all__ = ["MessageAdmin", "RoomAdmin"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not generic at run time
    """List rooms by name; record who created each."""

    list_display = ["name", "created_by", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(
        self, request: HttpRequest, obj: Room, form: Any, change: bool
    ) -> None:
        """Save the room, noting the creator of a new one."""
        if not change and request.user.is_authenticated:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # not generic at run time
    """List messages by room and author, newest first."""

    list_display = ["created_at", "room", "author", "text"]
    list_filter = ["room"]
    search_fields = ["text", "author__username"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    list_select_related = ["author"]
