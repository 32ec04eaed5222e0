"""Page URLs of c10k."""

from typing import Any

app_name = "c10k"

urlpatterns: list[Any] = []
