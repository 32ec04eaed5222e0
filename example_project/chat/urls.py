"""Page URLs of the chat."""

from django.urls import path

from example_project.chat import (
    converters,  # noqa: F401  (registers the "room" converter)
    views,
)

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("<room:room_name>/", views.room, name="room"),
]
