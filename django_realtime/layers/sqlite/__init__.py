"""A channel layer in one SQLite file, shared by the processes of a machine.

``CHANNEL_LAYERS = {"default": {"BACKEND":
"django_realtime.layers.sqlite.SQLiteChannelLayer", "CONFIG": {"path":
...}}}``; the options are documented on :class:`SQLiteChannelLayer`.
"""

from django_realtime.layers.sqlite.layer import DEFAULT_PATH, SQLiteChannelLayer

__all__ = ["DEFAULT_PATH", "SQLiteChannelLayer"]
