"""The feeds browser test's server: a page that lists a feed's rows live.

``GET /?user=<pk>``
    The page of ``docs/topics/browser-client.rst`` (live collections): the
    jobs of the ``jobs.job`` feed (example_project.jobs.bindings) that user
    ``pk`` may read, newest first, kept in sync by ``collection()``.
    The page also follows, each on a connection of its own, the feed's
    query ``active`` (``f.active``) and, after ``f.watch(pk)``, one row
    (``f.one``, realtime.js's ``record()``).
``POST /change/?op=create&owner=<pk>`` (or ``op=progress&id=<pk>&progress=N``,
``op=move&id=<pk>&owner=<pk>``, ``op=status&id=<pk>&status=S``,
``op=delete&id=<pk>``)
    Change the jobs in the server process, as a view would; the feed
    publishes each change (in this process's in-memory store).
``ws /ws/feeds/?user=<pk>``
    A FeedConsumer, with the connection's user taken from the query string
    (the test logs no one in).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import django

django.setup()

from asgiref.sync import sync_to_async  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db.models import F  # noqa: E402
from django.template.backends.django import DjangoTemplates  # noqa: E402
from django.urls import path  # noqa: E402

from django_realtime.feeds import FeedConsumer  # noqa: E402
from django_realtime.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django_realtime.streams import set_stream_store  # noqa: E402
from django_realtime.streams.stores import MemoryHistoryStore  # noqa: E402
from example_project.jobs.models import Job  # noqa: E402

PAGE = """{% load realtime %}<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>My jobs</title>
  {% realtime_client %}
</head>
<body>
  <ul id="jobs"></ul>
  <script type="module">
    import { connect, collection, record } from "django_realtime";

    const f = { offline: false, sockets: [], events: [] };
    const user = new URLSearchParams(location.search).get("user");
    const rt = connect(`/ws/feeds/?user=${user}`, {
      backoff: { initial: 50, max: 200 },
      createSocket: (url) => {
        // Offline: a port where nothing listens, as an unreachable server.
        const socket = new WebSocket(f.offline ? "ws://127.0.0.1:9/" : url);
        if (!f.offline) f.sockets.push(socket);
        return socket;
      },
    });
    rt.onState(({ state }) => (f.state = state));
    const jobs = collection(rt, "jobs.job", {
      compare: (a, b) => b.pk - a.pk, // newest first
      onError: (error) => console.error(error.code, error.message),
    });
    jobs.on("change", () => {
      document.getElementById("jobs").replaceChildren(
        ...jobs.list().map((job) => {
          const item = document.createElement("li");
          item.id = `job-${job.pk}`;
          item.textContent = `${job.pk}: ${job.status} ${job.progress} %`;
          return item;
        }),
      );
    });
    for (const type of ["enter", "update", "leave"]) {
      jobs.on(type, (row) => f.events.push([type, row.pk ?? row]));
    }
    f.jobs = jobs;
    f.shown = () =>
      [...document.querySelectorAll("#jobs li")].map((li) => li.textContent);
    f.drop = () => f.sockets.at(-1).close();
    f.second = () => {
      try {
        collection(rt, "jobs.job", { query: "active" });
      } catch (error) {
        return error.message;
      }
    };
    // Views of the feed, each on a connection of its own: a named query...
    const fast = { backoff: { initial: 50, max: 200 } };
    f.active = collection(connect(`/ws/feeds/?user=${user}`, fast), "jobs.job", {
      query: "active",
      compare: (a, b) => a.pk - b.pk,
    });
    f.activeShown = () => f.active.list().map((job) => `${job.pk}: ${job.status}`);
    // ... and one row.
    f.watch = (pk) => {
      f.one = record(connect(`/ws/feeds/?user=${user}`, fast), "jobs.job", pk);
      f.oneEvents = [];
      f.one.on("change", (one) => f.oneEvents.push(one.row?.progress ?? null));
      return f.one.ready.then(() => f.one.row?.progress ?? null);
    };
    window.f = f;
  </script>
</body>
</html>
"""


def _page() -> bytes:
    engine = DjangoTemplates(
        {"NAME": "feeds", "DIRS": [], "APP_DIRS": False, "OPTIONS": {}}
    )
    return engine.from_string(PAGE).render({}).encode()


async def _respond(send: Any, status: int, body: bytes, kind: str) -> None:
    headers = [(b"content-type", kind.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@sync_to_async
def _change(query: dict[str, list[str]]) -> int:
    op = query["op"][0]
    if op == "create":
        owner = int(query["owner"][0])
        return Job.objects.create(owner_id=owner, kind="wait", parameters={}).pk
    pk = int(query["id"][0])
    if op == "delete":
        Job.objects.filter(pk=pk).delete()
        return pk
    if op == "progress":
        changes: dict[str, Any] = {"progress": int(query["progress"][0])}
    elif op == "status":
        changes = {"status": query["status"][0]}
    else:
        changes = {"owner_id": int(query["owner"][0])}
    Job.objects.filter(pk=pk).update(**changes, version=F("version") + 1)
    return pk


async def http_application(scope: Any, receive: Any, send: Any) -> None:
    """Serve the page and the change hook."""
    if scope["path"] == "/":
        await _respond(send, 200, _page(), "text/html; charset=utf-8")
    elif scope["path"] == "/change/" and scope["method"] == "POST":
        pk = await _change(parse_qs(scope["query_string"].decode()))
        await _respond(send, 200, str(pk).encode(), "text/plain")
    else:
        await _respond(send, 404, b"not found", "text/plain")


class QueryUser:
    """Set ``scope["user"]`` to the user named by the ``user`` query parameter."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        query = parse_qs(scope["query_string"].decode())
        user = await User.objects.aget(pk=int(query["user"][0]))
        await self.inner({**scope, "user": user}, receive, send)


set_stream_store(MemoryHistoryStore())

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": QueryUser(
            URLRouter([path("ws/feeds/", FeedConsumer.as_asgi(feeds=["jobs.job"]))])
        ),
    }
)
