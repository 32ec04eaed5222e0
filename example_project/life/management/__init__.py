"""Management commands of life."""
