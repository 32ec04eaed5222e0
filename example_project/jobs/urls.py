"""Page URLs of jobs."""

from typing import Any

app_name = "jobs"

urlpatterns: list[Any] = []
