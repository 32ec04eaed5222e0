"""Application configuration of the chat."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Configure the chat application."""

    name = "example_project.chat"
    label = "chat"
