"""Pages of the chat: pick a room, then talk in it. All need a login.

Only rooms that exist have pages (:class:`~example_project.chat.models.Room`);
a user with the ``chat.add_room`` permission creates them from the index.
"""

import re

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render

from django_realtime.streams import get_stream_store
from example_project.chat.consumers import room_stream
from example_project.chat.converters import ROOM_NAME_PATTERN
from example_project.chat.models import MAX_MESSAGE_LENGTH, Message, Room
from example_project.jobs.models import stream_for_user

__all__ = ["HISTORY_LENGTH", "ROOMS_LISTED", "index", "room"]

HISTORY_LENGTH = 50
"""How many of the room's latest messages its page shows."""

ROOMS_LISTED = 100
"""How many rooms, by name, the index lists."""


def _name_problem(room_name: str) -> str | None:
    if re.fullmatch(ROOM_NAME_PATTERN, room_name):
        return None
    return (
        "A room name is 1 to 50 letters, digits, hyphens or underscores, "
        f"got {room_name!r}."
    )


def _index(
    request: HttpRequest, room_name: str = "", error: str = "", status: int = 200
) -> HttpResponse:
    context = {
        "error": error,
        "room_name": room_name,
        "room_name_pattern": ROOM_NAME_PATTERN,
        "rooms": Room.objects.values_list("name", flat=True)[:ROOMS_LISTED],
        "can_create": request.user.has_perm("chat.add_room"),
    }
    return render(request, "chat/index.html", context, status=status)


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """List the rooms and go to one; create one with a POST.

    A GET with ``?room=<name>`` goes to that room if it exists. A POST with
    the form's ``name`` creates the room (if it does not exist yet) and goes
    to it; only users with the ``chat.add_room`` permission may (403 for
    others). A name that is not a room name is a 400, one of no room a 404;
    both show the index again with the reason, and the button to create the
    room for those who may.
    """
    if request.method == "POST":
        return _create(request)
    room_name = request.GET.get("room", "").strip()
    if not room_name:
        return _index(request)
    problem = _name_problem(room_name)
    if problem is not None:
        return _index(request, room_name, problem, status=400)
    if Room.objects.filter(name=room_name).exists():
        return redirect("chat:room", room_name=room_name)
    return _index(request, room_name, f"There is no room {room_name!r}.", status=404)


def _create(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("chat.add_room"):
        return HttpResponseForbidden(
            "Creating rooms needs the chat.add_room permission.\n",
            content_type="text/plain; charset=utf-8",
        )
    room_name = request.POST.get("name", "").strip()
    problem = _name_problem(room_name)
    if problem is not None:
        return _index(request, room_name, problem, status=400)
    # login_required: the user is a User.
    creator = request.user if request.user.is_authenticated else None
    Room.objects.get_or_create(name=room_name, defaults={"created_by": creator})
    return redirect("chat:room", room_name=room_name)


@login_required
def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """Show the room ``room_name``: its latest messages and a message box.

    The page renders the messages saved so far, then follows the room's
    stream from the position it had before they were read, so it misses
    nothing said in between. A room that does not exist is a 404, and
    leaves nothing behind: its stream is not read. The page's jobs badge
    follows the user's jobs stream, named in the page; beside the log, the
    rooms (the first :data:`ROOMS_LISTED` by name) link to theirs.
    """
    get_object_or_404(Room, name=room_name)
    # First the stream's position, then the rows. A message committed after
    # this read is published after it too, so the page gets it from the
    # stream; one both read and published, the page shows once, by its id.
    position = async_to_sync(get_stream_store().read)(room_stream(room_name))
    latest = (
        Message.objects.filter(room_id=room_name)
        .select_related("author")
        .order_by("-created_at", "-id")[:HISTORY_LENGTH]
    )
    context = {
        "room_name": room_name,
        # Oldest first, as the log reads.
        "history": list(latest)[::-1],
        "since": {"epoch": position.epoch, "offset": position.offset},
        "max_message_length": MAX_MESSAGE_LENGTH,
        "jobs_stream": stream_for_user(request.user.pk),
        # The room list beside the log, to go to another room.
        "rooms": Room.objects.values_list("name", flat=True)[:ROOMS_LISTED],
    }
    return render(request, "chat/room.html", context)
