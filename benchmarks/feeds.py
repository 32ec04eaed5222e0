"""Feeds under load: many subscribers, each reading only their own rows.

In one process, with no server: ``--subscribers`` FeedConsumer connections
(in-process communicators), one user each, follow the example's
``jobs.job`` feed (each user reads their own jobs: a row rule). A writer
updates ``--rate`` jobs a second for ``--seconds`` seconds, each owned by
one of the subscribers, through ``QuerySet.update()`` (FeedQuerySet). Each
update reaches its owner's page only. Reported per store (in-memory, then
Redis):

- delivery latency, from before the update to the page's frame (p50, p99);
- lost: updates the owner's page never got;
- database queries per update: the permission checks made on delivery
  for all subscribers together, and the writer's own.

``--view`` chooses what each page follows: the whole feed (``whole``), the
binding's named query ``active`` (``query``: one more query per batch for
all pages together), or its user's one job (``row``: ``record()``).

Run: python -m benchmarks.feeds [--smoke] [--subscribers N] [--rate R]
[--seconds S] [--stores memory,redis] [--view whole|query|row]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

import django
from django.conf import settings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


def configure(db_path: str) -> None:
    settings.configure(
        SECRET_KEY="django_realtime-benchmarks-not-secret",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django_realtime",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "example_project.jobs",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": db_path,
                "OPTIONS": {"timeout": 30},
            }
        },
        CHANNEL_LAYERS={
            "default": {"BACKEND": "django_realtime.layers.InMemoryChannelLayer"}
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        LOGGING_CONFIG=None,
    )
    django.setup()


def store_for(name: str) -> Any:
    from django_realtime.streams.stores import MemoryHistoryStore, PolicyTable

    policies = PolicyTable({"*": {"MAX_COUNT": 10_000}})
    if name == "memory":
        return MemoryHistoryStore(policies=policies)
    from django_realtime.streams.stores.redis import RedisHistoryStore

    prefix = f"bench-feeds-{uuid.uuid4().hex[:8]}"
    return RedisHistoryStore(policies=policies, url=REDIS_URL, prefix=prefix)


class Page:
    """One subscriber: a FeedConsumer connection, and when each change arrived."""

    def __init__(self, communicator: Any) -> None:
        self.communicator = communicator
        self.arrived: dict[tuple[int, int], float] = {}
        self.task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        while True:
            frame = await self.communicator.receive_json_from(3600)
            if frame.get("kind") != "publication":
                continue
            row = frame["data"].get("row")
            if row is not None:
                key = (row["pk"], row["version"])
                self.arrived.setdefault(key, time.perf_counter())


async def run_store(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User
    from django.db import connection
    from django.db.models import F

    from django_realtime.feeds import FeedConsumer, stats
    from django_realtime.streams import set_stream_store
    from django_realtime.testing import WebsocketCommunicator
    from example_project.jobs.models import Job

    store = store_for(name)
    set_stream_store(store)
    users = await sync_to_async(lambda: list(User.objects.order_by("pk")))()
    jobs = await sync_to_async(
        lambda: list(Job.objects.order_by("owner_id").values_list("pk", "owner_id"))
    )()
    owner_of = dict(jobs)
    job_of = {owner: pk for pk, owner in jobs}

    def view_of(view: str, owner: int) -> dict[str, Any]:
        if view == "query":
            return {"query": "active"}
        if view == "row":
            return {"pk": job_of[owner]}
        return {}

    consumer = FeedConsumer.as_asgi(feeds=["jobs.job"])

    pages: dict[int, Page] = {}
    for user in users:

        async def app(scope: Any, receive: Any, send: Any, user: Any = user) -> None:
            await consumer({**scope, "user": user}, receive, send)

        communicator = WebsocketCommunicator(app, "/ws/feeds/")
        connected, _ = await communicator.connect(30)
        assert connected
        await communicator.send_json_to(
            {
                "kind": "request",
                "id": 1,
                "type": "feed.snapshot",
                "data": {"feed": "jobs.job", **view_of(args.view, user.pk)},
            }
        )
        snapshot = (await communicator.receive_json_from(30))["data"]
        await communicator.send_json_to(
            {
                "kind": "subscribe",
                "id": 2,
                "stream": snapshot["stream"],
                "since": {"epoch": snapshot["epoch"], "offset": snapshot["offset"]},
            }
        )
        answer = await communicator.receive_json_from(30)
        assert answer["kind"] == "subscribed", answer
        page = pages[user.pk] = Page(communicator)
        page.task = asyncio.ensure_future(page.read())

    writer_queries = 0

    def update(pk: int, progress: int) -> int:
        nonlocal writer_queries
        count = 0

        def counting(
            execute: Any, sql: str, params: Any, many: bool, context: Any
        ) -> Any:
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counting):
            Job.objects.filter(pk=pk).update(
                progress=progress, version=F("version") + 1
            )
            version = Job.objects.values_list("version", flat=True).get(pk=pk)
        writer_queries += count - 1  # not the read of the version, which is ours
        return version

    sent: dict[tuple[int, int], float] = {}
    checks_before = stats.permission_queries
    total = args.rate * args.seconds
    started = time.perf_counter()
    for n in range(total):
        due = started + n / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pk = jobs[n % len(jobs)][0]
        t0 = time.perf_counter()
        version = await sync_to_async(update)(pk, n % 100)
        sent[(pk, version)] = t0
    # Wait for the last deliveries (bounded).
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        missing = [key for key in sent if key not in pages[owner_of[key[0]]].arrived]
        if not missing:
            break
        await asyncio.sleep(0.05)
    latencies = []
    lost = 0
    for key, t0 in sent.items():
        arrived = pages[owner_of[key[0]]].arrived.get(key)
        if arrived is None:
            lost += 1
        else:
            latencies.append((arrived - t0) * 1000)
    checks = stats.permission_queries - checks_before
    for page in pages.values():
        if page.task is not None:
            page.task.cancel()
        await page.communicator.disconnect()
    if hasattr(store, "close"):
        await store.close()
    latencies.sort()
    return {
        "store": name,
        "updates": total,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
        "lost": lost,
        "checks": checks / total,
        "writer": writer_queries / total,
    }


def prepare(subscribers: int, jobs_each: int) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from example_project.jobs.models import Job

    call_command("migrate", verbosity=0, interactive=False)
    User.objects.bulk_create(
        [User(username=f"user{n}", password="!") for n in range(subscribers)]
    )
    owners = list(User.objects.order_by("pk"))
    Job.objects.bulk_create(
        [
            Job(owner=owner, kind="wait", parameters={"number": 1})
            for owner in owners
            for _ in range(jobs_each)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small, quick run")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100, help="updates a second")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--stores", default="memory,redis")
    parser.add_argument("--view", choices=("whole", "query", "row"), default="whole")
    args = parser.parse_args()
    if args.smoke:
        args.subscribers, args.rate, args.seconds = 50, 50, 2

    with tempfile.TemporaryDirectory() as tmp:
        configure(os.path.join(tmp, "feeds.sqlite3"))
        prepare(args.subscribers, 1)
        print(
            f"feeds: {args.subscribers} subscribers (one user each, own rows only), "
            f"{args.rate} updates/s for {args.seconds} s, view: {args.view}"
        )
        print(
            f"{'store':<8}{'updates':>9}{'p50 ms':>9}{'p99 ms':>9}{'lost':>6}"
            f"{'checks/upd':>12}{'writer q/upd':>14}"
        )
        for name in args.stores.split(","):
            result = asyncio.run(run_store(name, args))
            print(
                f"{result['store']:<8}{result['updates']:>9}{result['p50']:>9.1f}"
                f"{result['p99']:>9.1f}{result['lost']:>6}{result['checks']:>12.2f}"
                f"{result['writer']:>14.2f}"
            )


if __name__ == "__main__":
    main()
