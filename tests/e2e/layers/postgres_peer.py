"""Another process on a PostgreSQL layer's database, driven by the tests.

Run as ``python -m tests.e2e.layers.postgres_peer ROLE DBNAME TARGET ARG``;
every line it prints is one JSON object, flushed at once. Django is
configured with DBNAME on the local server as its ``default`` database.

Roles:

- ``receive GROUP COUNT``: make a channel, join GROUP, print
  ``{"channel": ...}``, then print each of COUNT messages received.
- ``send-sync GROUP COUNT``: from plain sync code, as ``manage.py shell``
  does, call ``async_to_sync(layer.group_send)`` COUNT times; print the
  thread count and the layer's server connections after the first and
  after the last call.
- ``atomic STREAM ENDING``: publish inside ``transaction.atomic()`` with a
  :class:`~django_realtime.streams.stores.postgres.PostgresHistoryStore`
  and print ``{"written": ...}``; then end the block as ENDING says:
  ``commit``, ``rollback``, or ``die-after-commit`` (the process kills
  itself in an on-commit hook).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading

import django
import psycopg
from asgiref.sync import async_to_sync
from django.conf import settings


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def setup(dbname: str) -> None:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": dbname,
                "HOST": "127.0.0.1",
                "PORT": "5432",
                "USER": "postgres",
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()


def connections_named(prefix: str) -> int:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres") as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            (prefix + "%",),
        ).fetchone()
    return int(row[0]) if row else 0


async def receive(group: str, count: int) -> None:
    from django_realtime.layers.postgres import PostgresChannelLayer

    layer = PostgresChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    say(channel=channel)
    for _ in range(count):
        say(message=await layer.receive(channel))
    await layer.close()


def send_sync(group: str, count: int) -> None:
    from django_realtime.layers.postgres import PostgresChannelLayer

    layer = PostgresChannelLayer()
    name = f"drt-layer-{layer.process_id}"
    send = async_to_sync(layer.group_send)
    send(group, {"type": "from.shell", "n": 0})
    threads, backends = threading.active_count(), connections_named(name)
    for n in range(1, count):
        send(group, {"type": "from.shell", "n": n})
    say(
        threads=[threads, threading.active_count()],
        connections=[backends, connections_named(name)],
    )


def atomic(stream: str, ending: str) -> None:
    from django.db import transaction

    from django_realtime.streams.stores.postgres import PostgresHistoryStore

    store = PostgresHistoryStore()
    try:
        with transaction.atomic():
            if ending == "die-after-commit":
                transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
            publication = store.publish_in_transaction(stream, '"saved"')
            say(written=publication.offset, epoch=publication.epoch)
            if ending == "rollback":
                raise RuntimeError("roll back")
    except RuntimeError:
        say(rolled_back=True)
        return
    say(committed=True)


def main() -> None:
    role, dbname, target, arg = sys.argv[1:5]
    setup(dbname)
    if role == "receive":
        asyncio.run(receive(target, int(arg)))
    elif role == "send-sync":
        send_sync(target, int(arg))
    elif role == "atomic":
        atomic(target, arg)
    else:
        raise SystemExit(f"Expected receive, send-sync or atomic, got {role!r}.")


if __name__ == "__main__":
    main()
