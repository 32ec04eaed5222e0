"""Settings, and a publisher, for the outbox crash tests (test_outbox_crash.py).

As a settings module: the Django database is the SQLite file ``OUTBOX_DB``,
streams live in Redis under the prefix ``OUTBOX_PREFIX``, and the stream
outbox is on, relaying rows left behind after half a second.

As a program, ``python -m tests.e2e.streams.outbox_peer MODE [STREAM TEXT]``:

- ``migrate``: create the tables;
- ``die-after-commit``: publish ``TEXT`` in a transaction and exit with
  status 17 at its commit, before the relay;
- ``die-after-relay``: publish ``TEXT`` in a transaction; the relay after
  the commit publishes the row, then the process exits with status 17
  before deleting it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

SECRET_KEY = "outbox-crash-tests"
INSTALLED_APPS = ["django_realtime"]
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# For runworker, which relays rows left behind too.
ASGI_APPLICATION = "tests.integration.streams.daphne_app.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("OUTBOX_DB", "outbox.sqlite3"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
REALTIME: dict[str, Any] = {
    "STREAM_STORE": {
        "BACKEND": "django_realtime.streams.stores.redis.RedisHistoryStore",
        "OPTIONS": {
            "url": "redis://127.0.0.1:6379",
            "prefix": os.environ.get("OUTBOX_PREFIX", "outbox"),
        },
    },
    "STREAM_OUTBOX": {"DATABASES": ["default"], "RELAY_AFTER": 0.5, "INTERVAL": 0.1},
}

#: The exit status of a publisher that died on purpose.
DIED = 17


def main(mode: str, *args: str) -> None:
    """Run ``mode`` (see the module's docstring)."""
    import django

    django.setup()

    from django.core.management import call_command
    from django.db import transaction

    from django_realtime.streams import publish, relay

    if mode == "migrate":
        call_command("migrate", verbosity=0)
        return
    stream, text = args
    if mode == "die-after-commit":
        with transaction.atomic():
            # Registered first, so it runs first at the commit.
            transaction.on_commit(lambda: os._exit(DIED))
            publish(stream, text)
    elif mode == "die-after-relay":
        relaying = relay._publish_from_sync

        def dying(store: Any) -> relay.Publish:
            publish_once = relaying(store)

            def publish_then_die(stream: str, data: str, key: str) -> object:
                publish_once(stream, data, key)
                os._exit(DIED)

            return publish_then_die

        relay._publish_from_sync = dying
        with transaction.atomic():
            publish(stream, text)
    else:
        raise SystemExit(f"Unknown mode {mode!r}.")
    raise SystemExit("The publisher was meant to die.")


if __name__ == "__main__":
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.e2e.streams.outbox_peer"
    main(*sys.argv[1:])
