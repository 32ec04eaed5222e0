"""Pages of the chat: pick a room, then talk in it."""

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from example_project.chat.converters import ROOM_NAME_PATTERN

__all__ = ["index", "room"]


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


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """Show the room ``room_name``: its message log and a message box."""
    return render(request, "chat/room.html", {"room_name": room_name})
