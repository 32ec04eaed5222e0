"""Application configuration of c10k."""

from django.apps import AppConfig


class C10kConfig(AppConfig):
    """Configure the c10k application."""

    name = "example_project.c10k"
    label = "c10k"
