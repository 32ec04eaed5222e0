"""Application configuration of life."""

from django.apps import AppConfig


class LifeConfig(AppConfig):
    """Configure the life application."""

    name = "example_project.life"
    label = "life"
