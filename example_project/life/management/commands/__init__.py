"""Management commands of life: ``gameoflife``."""
