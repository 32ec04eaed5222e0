"""A tiny Django project that the runserver and runworker tests start for real."""
