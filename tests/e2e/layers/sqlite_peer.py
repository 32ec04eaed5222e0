"""Another process on a SQLite layer's file, driven by the tests next to it.

Run as ``python -m tests.e2e.layers.sqlite_peer ROLE PATH [ARGS]``; every
line it prints is one JSON object, flushed at once.

Roles:

- ``receive GROUP COUNT``: make a channel, join GROUP, print
  ``{"channel": ...}``, then print each of COUNT messages received.
- ``send-sync GROUP COUNT``: from plain sync code, as ``manage.py shell``
  does, call ``async_to_sync(layer.group_send)`` COUNT times; print the
  thread count after the first and after the last call.
- ``flood CHANNEL COUNT``: send COUNT messages to CHANNEL, printing each
  number once its send has returned.
- ``fork CHANNEL N``: send to CHANNEL, fork, send again from the child
  (within N seconds) and print the child's exit status.
- ``publish STREAM COUNT``: publish COUNT payloads to STREAM with a
  :class:`~django_realtime.streams.stores.sqlite.SQLiteHistoryStore`,
  printing each publication's epoch and offset, then exit.
- ``atomic STREAM ENDING``: with Django's database in the same file,
  publish inside ``transaction.atomic()`` and print ``{"written": ...}``;
  then end the block as ENDING says: ``commit``, ``rollback``, or
  ``die-after-commit`` (the process kills itself in an on-commit hook
  registered before the store's, so its wake-up is never sent).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time

from asgiref.sync import async_to_sync

from django_realtime.layers.sqlite import SQLiteChannelLayer
from django_realtime.streams.stores.sqlite import SQLiteHistoryStore


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def receive(layer: SQLiteChannelLayer, group: str, count: int) -> None:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    say(channel=channel)
    for _ in range(count):
        say(message=await layer.receive(channel))
    await layer.close()


def send_sync(layer: SQLiteChannelLayer, group: str, count: int) -> None:
    send = async_to_sync(layer.group_send)
    send(group, {"type": "from.shell", "n": 0})
    threads, fds = threading.active_count(), len(os.listdir("/dev/fd"))
    for n in range(1, count):
        send(group, {"type": "from.shell", "n": n})
    say(
        threads=[threads, threading.active_count()],
        fds=[fds, len(os.listdir("/dev/fd"))],
    )


async def flood(layer: SQLiteChannelLayer, channel: str, count: int) -> None:
    for n in range(count):
        await layer.send(channel, {"type": "flood", "n": n})
        say(sent=n)


async def publish(path: str, stream: str, count: int) -> None:
    store = SQLiteHistoryStore(path)
    for n in range(count):
        publication = await store.publish(stream, json.dumps({"n": n}))
        say(epoch=publication.epoch, offset=publication.offset)
    await store.close()


def atomic(path: str, stream: str, ending: str) -> None:
    import os
    import signal

    import django
    from django.conf import settings
    from django.db import transaction

    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": path}},
        INSTALLED_APPS=[],
    )
    django.setup()
    store = SQLiteHistoryStore(path)
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


def fork(layer: SQLiteChannelLayer, channel: str, seconds: int) -> None:
    async def send(text: str) -> None:
        async with asyncio.timeout(seconds):
            await layer.send(channel, {"type": "forked", "from": text})

    asyncio.run(send("parent"))
    time.sleep(0.5)  # a process forks later than its first use of the layer
    child = os.fork()
    if child == 0:
        try:
            asyncio.run(send("child"))
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    say(child=os.waitstatus_to_exitcode(status))


def main() -> None:
    role, path, target, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    layer = SQLiteChannelLayer(path=path, capacity=100_000)
    if role == "fork":
        fork(layer, target, int(count))
    elif role == "atomic":
        atomic(path, target, count)
    elif role == "publish":
        asyncio.run(publish(path, target, int(count)))
    elif role == "receive":
        asyncio.run(receive(layer, target, int(count)))
    elif role == "send-sync":
        send_sync(layer, target, int(count))
    elif role == "flood":
        asyncio.run(flood(layer, target, int(count)))
    else:
        raise SystemExit(f"Expected receive, send-sync or flood, got {role!r}.")


if __name__ == "__main__":
    main()
