"""Pages of the chat: pick a room, then talk in it. Both need a login."""

import re

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from django_realtime.streams import get_stream_store
from example_project.chat.consumers import room_stream
from example_project.chat.converters import ROOM_NAME_PATTERN
from example_project.chat.models import MAX_MESSAGE_LENGTH, Message

__all__ = ["HISTORY_LENGTH", "index", "room"]

HISTORY_LENGTH = 50
"""How many of the room's latest messages its page shows."""


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Ask for a room name, and go to that room once a valid one is given."""
    room_name = request.GET.get("room", "").strip()
    error = ""
    if room_name:
        if re.fullmatch(ROOM_NAME_PATTERN, room_name):
            return redirect("chat:room", room_name=room_name)
        error = (
            "A room name is 1 to 50 letters, digits, hyphens or underscores, "
            f"got {room_name!r}."
        )
    context = {
        "error": error,
        "room_name": room_name,
        "room_name_pattern": ROOM_NAME_PATTERN,
    }
    return render(request, "chat/index.html", context, status=400 if error else 200)


@login_required
def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """Show the room ``room_name``: its latest messages and a message box.

    The page renders the messages saved so far, then follows the room's
    stream from the position it had before they were read, so it misses
    nothing said in between.
    """
    # First the stream's position, then the rows. A message committed after
    # this read is published after it too, so the page gets it from the
    # stream; one both read and published, the page shows once, by its id.
    position = async_to_sync(get_stream_store().read)(room_stream(room_name))
    latest = (
        Message.objects.filter(room=room_name)
        .select_related("author")
        .order_by("-created_at", "-id")[:HISTORY_LENGTH]
    )
    context = {
        "room_name": room_name,
        # Oldest first, as the log reads.
        "history": list(latest)[::-1],
        "since": {"epoch": position.epoch, "offset": position.offset},
        "max_message_length": MAX_MESSAGE_LENGTH,
    }
    return render(request, "chat/room.html", context)
