"""Application configuration of jobs."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Configure the jobs application."""

    name = "example_project.jobs"
    label = "jobs"

    def ready(self) -> None:
        """Register the jobs feed."""
        from example_project.jobs import bindings  # noqa: F401
