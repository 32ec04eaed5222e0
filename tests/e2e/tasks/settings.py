"""Settings of the ``runworker`` process in test_tasks_runworker.py.

The test suite's settings, with the test's database file
(``TASKS_E2E_DATABASE``), a SQLite channel layer and history store in a file
of their own (``TASKS_E2E_LAYER``, ``TASKS_E2E_STORE``), and the channel
layer task backend.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["TASKS_E2E_DATABASE"],
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "django_realtime.layers.sqlite.SQLiteChannelLayer",
        "CONFIG": {"path": os.environ["TASKS_E2E_LAYER"]},
    }
}
REALTIME = {
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
        "OPTIONS": {"path": os.environ["TASKS_E2E_STORE"]},
    }
}
TASKS = {"default": {"BACKEND": "django_realtime.tasks.ChannelLayerTaskBackend"}}
ASGI_APPLICATION = "tests.e2e.tasks.app.application"
