"""Another process on a RabbitMQ layer, driven by the tests next to it.

Run as ``python -m tests.e2e.layers.rabbitmq_peer ROLE PREFIX TARGET COUNT``;
every line it prints is one JSON object, flushed at once. PREFIX is the
layer's ``prefix``, so that a test's processes meet only each other.

Roles:

- ``receive GROUP COUNT``: make a channel, join GROUP, print
  ``{"channel": ...}``, then print each of COUNT messages received.
- ``work CHANNEL COUNT``: receive from the normal CHANNEL, as ``runworker``
  does, and print each of COUNT messages.
- ``send-sync GROUP COUNT``: from plain sync code, as ``manage.py shell``
  does, call ``async_to_sync(layer.group_send)`` COUNT times; print the
  thread and file descriptor counts after the first and the last call.
- ``fork CHANNEL SECONDS``: make a channel and send its name to CHANNEL,
  fork, do the same from the child (within SECONDS) and print the child's
  exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time

from asgiref.sync import async_to_sync

from django_realtime.layers.rabbitmq import RabbitMQChannelLayer

URL = "amqp://guest:guest@127.0.0.1:5672/"


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def receive(layer: RabbitMQChannelLayer, group: str, count: int) -> None:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    say(channel=channel)
    for _ in range(count):
        say(message=await layer.receive(channel))
    await layer.close()


async def work(layer: RabbitMQChannelLayer, channel: str, count: int) -> None:
    for _ in range(count):
        say(message=await layer.receive(channel))
    await layer.close()


def send_sync(layer: RabbitMQChannelLayer, group: str, count: int) -> None:
    send = async_to_sync(layer.group_send)
    send(group, {"type": "from.shell", "n": 0})
    threads, fds = threading.active_count(), len(os.listdir("/dev/fd"))
    for n in range(1, count):
        send(group, {"type": "from.shell", "n": n})
    say(
        threads=[threads, threading.active_count()],
        fds=[fds, len(os.listdir("/dev/fd"))],
    )
    async_to_sync(layer.close)()


def fork(layer: RabbitMQChannelLayer, channel: str, seconds: int) -> None:
    async def send(text: str) -> None:
        async with asyncio.timeout(seconds):
            own = await layer.new_channel()
            await layer.send(channel, {"type": "forked", "from": text, "own": own})

    asyncio.run(send("parent"))
    time.sleep(0.2)  # a process forks later than its first use of the layer
    child = os.fork()
    if child == 0:
        try:
            asyncio.run(send("child"))
            asyncio.run(layer.close())
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    say(child=os.waitstatus_to_exitcode(status))
    asyncio.run(layer.close())


def main() -> None:
    role, prefix, target, count = sys.argv[1:5]
    layer = RabbitMQChannelLayer(url=URL, prefix=prefix, capacity=100_000)
    if role == "receive":
        asyncio.run(receive(layer, target, int(count)))
    elif role == "work":
        asyncio.run(work(layer, target, int(count)))
    elif role == "send-sync":
        send_sync(layer, target, int(count))
    elif role == "fork":
        fork(layer, target, int(count))
    else:
        raise SystemExit(f"Unknown role {role!r}.")


if __name__ == "__main__":
    main()
