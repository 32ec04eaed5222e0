"""System checks for django_realtime's configuration."""
