"""Page URLs of life."""

from typing import Any

app_name = "life"

urlpatterns: list[Any] = []
