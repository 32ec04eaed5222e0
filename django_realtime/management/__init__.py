"""Management commands of django_realtime."""
