"""The chat's messages in Django's admin."""

from django.contrib import admin

from example_project.chat.models import Message

__all__ = ["MessageAdmin"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """List messages by room and author, newest first."""

    list_display = ["created_at", "room", "author", "text"]
    list_filter = ["room"]
    search_fields = ["text", "author__username"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    list_select_related = ["author"]
