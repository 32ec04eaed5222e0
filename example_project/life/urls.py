"""Page URLs of life: ``/life/`` shows the default board, ``/life/<board>/`` any."""

from django.urls import path

from example_project.life import (
    converters,  # noqa: F401  (registers the "life_board" converter)
    views,
)

app_name = "life"

urlpatterns = [
    path("", views.board, name="index"),
    path("<life_board:board_name>/", views.board, name="board"),
]
