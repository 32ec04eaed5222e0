"""The ``runserver`` and ``runworker`` commands."""
