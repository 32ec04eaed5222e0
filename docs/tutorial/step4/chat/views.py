from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from django_realtime.streams import get_stream_store

from .models import Message, room_stream


@login_required
def room(request, room_name):
    # First where the room's stream is, then the messages. A message saved
    # after this read is published after this position, so the page gets it
    # from the stream, even if the query below finds it too.
    position = async_to_sync(get_stream_store().read)(room_stream(room_name))
    latest = Message.objects.filter(room_name=room_name).order_by("-id")[:50]
    context = {
        "room_name": room_name,
        "messages": reversed(latest.select_related("author")),
        "since": {"epoch": position.epoch, "offset": position.offset},
    }
    return render(request, "chat/room.html", context)
