"""The example jobs app in-process: the work, the page, its socket, the worker.

The worker runs as ``runworker`` runs it, in a
:class:`~django_realtime.worker.Worker` fed from the in-memory channel layer
through the project's ``channel_routes``; the owner's page follows the
owner's stream as the browser does, through a
:class:`~django_realtime.testing.StreamClient` on the page's socket route,
logged in with a session cookie. Every test has a fresh in-memory history
store. The worker's tests run on SQLite and on PostgreSQL: news of a result
must never reach the page before its row is visible to other connections.
Real processes and Redis: tests/e2e/example/test_jobs_e2e.py; the page itself
in Chromium: tests/browser/example/test_jobs_browser.py.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connections, transaction
from django.test import AsyncClient, Client
from django.urls import include, path
from django.utils import timezone

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.layers import InMemoryChannelLayer
from django_realtime.layers.base import ChannelLayer
from django_realtime.routing import ChannelNameRouter, URLRouter
from django_realtime.streams import Position, get_stream_store, set_stream_store
from django_realtime.streams.stores import MemoryHistoryStore
from django_realtime.testing import RequestFailed, StreamClient, WebsocketCommunicator
from django_realtime.worker import Worker
from example_project.jobs import work
from example_project.jobs.models import Job, cancel_job, stream_for_user
from example_project.jobs.routing import channel_routes, websocket_urlpatterns
from example_project.jobs.views import FULL_QUEUE_ERROR, submit_job
from example_project.jobs.work import (
    STEPS,
    JobFailed,
    count_primes_between,
    describe,
    run,
)
from example_project.jobs.worker import UNEXPECTED_ERROR, finish
from tests.session_databases import PinnedRouter, database

__all__ = ["database"]  # a fixture used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

CommunicatorFactory = Callable[..., WebsocketCommunicator]
WAIT = 10.0
PASSWORD = "correct horse battery staple"

#: What the page shows of a job's progress: (status, percent) of each news.
Progress = list[tuple[str, int]]


# The page's URLs, with the login and chat URLs its template links to.
urlpatterns = [
    path("jobs/", include("example_project.jobs.urls")),
    path("chat/", include("example_project.chat.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
]


@pytest.fixture(autouse=True)
def _page_settings(settings: Any) -> None:
    """Serve the page as the example project does: templates, CSRF, login."""
    from example_project import settings as example

    settings.ROOT_URLCONF = __name__
    settings.TEMPLATES = example.TEMPLATES
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    settings.LOGIN_URL = "login"


@pytest.fixture(autouse=True)
def store() -> Iterator[MemoryHistoryStore]:
    """Give the test a history store of its own."""
    fresh = MemoryHistoryStore()
    old = set_stream_store(fresh)
    yield fresh
    set_stream_store(old)


@pytest.fixture
def jobs_database(database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Keep jobs beside users and sessions: on SQLite, then on PostgreSQL."""
    monkeypatch.setattr(PinnedRouter, "models", PinnedRouter.models | {("jobs", "job")})
    return database


def page_application() -> Any:
    """Return the page's socket routes behind the project's auth stack."""
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


async def session_cookie(username: str) -> bytes:
    """Create ``username``, log in over HTTP and return the cookie header."""
    await User.objects.acreate_user(username, password=PASSWORD)
    client = AsyncClient()
    assert await client.alogin(username=username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def create_user(username: str) -> User:
    return await User.objects.acreate_user(username, password=PASSWORD)


async def get_user(username: str) -> User:
    return await User.objects.aget(username=username)


async def submit(owner: User, kind: str = "wait", **parameters: Any) -> Job:
    """Submit a job as the view does."""
    parameters = {"number": 1, "fail_halfway": False, **parameters}
    return await sync_to_async(submit_job)(owner, kind, parameters)


def read_committed(pk: int) -> Job:
    """Return job ``pk`` as a new connection, in another thread, sees it."""
    try:
        return Job.objects.get(pk=pk)
    finally:
        connections.close_all()


async def apublished(stream: str) -> list[Any]:
    """Return everything the store keeps of ``stream``, oldest first."""
    store = get_stream_store()
    newest = await store.read(stream)
    history = await store.read(stream, Position(newest.epoch, 0))
    assert history.recovered, history
    return [json.loads(publication.data) for publication in history.publications]


def published(stream: str) -> list[Any]:
    """Return everything the store keeps of ``stream``, from sync code."""
    return async_to_sync(apublished)(stream)


def progress(news: list[dict[str, Any]]) -> Progress:
    return [(item["job"]["status"], item["job"]["progress"]) for item in news]


class Page:
    """One user's jobs page: a stream client on the user's stream."""

    def __init__(self, client: StreamClient, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.read = 0

    async def next(self) -> dict[str, Any]:
        """Return the next news the page gets."""
        news = await self.client.wait_for(self.stream, self.read + 1, timeout=WAIT)
        self.read += 1
        item: dict[str, Any] = news[self.read - 1]
        return item

    async def until_finished(self, job_id: int) -> list[dict[str, Any]]:
        """Return the news of ``job_id`` the page gets, up to its end."""
        news = []
        while True:
            item = await self.next()
            if item["job"]["id"] != job_id:
                continue
            news.append(item)
            if item["job"]["status"] in {"done", "failed", "cancelled"}:
                return news

    @property
    def everything(self) -> list[dict[str, Any]]:
        """Return all the news the page got, across reconnections."""
        return self.client.received[self.stream]


Listen = Callable[[str], Awaitable[Page]]


@pytest.fixture
async def listen(channel_layer: ChannelLayer) -> AsyncIterator[Listen]:
    """Return a coroutine function that opens a user's page and follows its stream.

    The first call for a username creates the user and logs them in.
    """
    cookies: dict[str, bytes] = {}
    clients: list[StreamClient] = []

    async def listen(username: str) -> Page:
        if username not in cookies:
            cookies[username] = await session_cookie(username)
        client = StreamClient(
            page_application(), "/ws/jobs/", [(b"cookie", cookies[username])]
        )
        clients.append(client)
        await client.connect()
        user = await get_user(username)
        stream = stream_for_user(user.pk)
        await client.subscribe(stream)
        return Page(client, stream)

    yield listen
    for client in clients:
        await client.close()


@pytest.fixture
async def worker(channel_layer: ChannelLayer) -> AsyncIterator[Worker]:
    """Run the project's channel routes as ``runworker jobs`` does."""
    worker = Worker(
        ChannelNameRouter(channel_routes), ["jobs"], channel_layer, shutdown_timeout=1
    )
    task = asyncio.create_task(worker.run())
    yield worker
    worker.stop()
    await asyncio.wait_for(task, WAIT)


# The work


def test_count_primes_between_agrees_with_trial_division() -> None:
    def is_prime(n: int) -> bool:
        return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))

    for low in range(0, 40):
        for high in range(low, 130):
            expected = sum(map(is_prime, range(low, high)))
            assert count_primes_between(low, high) == expected, (low, high)


async def test_counting_primes_reports_each_step_and_ends_with_the_count() -> None:
    steps = [step async for step in run("primes", {"number": 1_000_000})]

    assert [step.percent for step in steps] == [
        (index + 1) * 100 // STEPS for index in range(STEPS)
    ]
    counts = [step.result["primes"] for step in steps]
    assert counts == sorted(counts)
    assert steps[-1].result == {"below": 1_000_000, "primes": 78_498}


async def test_a_job_asked_to_fail_fails_halfway() -> None:
    percents = []

    async def count() -> None:
        async for step in run("primes", {"number": 100, "fail_halfway": True}):
            percents.append(step.percent)

    with pytest.raises(JobFailed, match=r"^Failed at 50 %, as asked\.$"):
        await count()

    assert percents == list(range(5, 50, 5))


async def test_an_unknown_kind_of_job_fails_with_the_kinds_it_knows() -> None:
    with pytest.raises(JobFailed, match=r"among \['primes', 'wait'\], got 'nap'"):
        async for _ in run("nap", {"number": 1}):
            pass


def test_a_job_says_what_it_does() -> None:
    assert describe("primes", {"number": 1_000_000}) == (
        "Count the primes below 1,000,000"
    )
    assert describe("wait", {"number": 1}) == "Wait 1 second"
    assert describe("wait", {"number": 3, "fail_halfway": True}) == (
        "Wait 3 seconds (and fail halfway)"
    )


# The row


async def test_jobs_no_worker_will_finish_are_failed_with_the_reason() -> None:
    alice = await create_user("alice")
    now = timezone.now()

    def ago(seconds: float) -> datetime.datetime:
        return now - datetime.timedelta(seconds=seconds)

    fresh = await Job.objects.acreate(owner=alice, kind="wait", queued_at=ago(59))
    expired = await Job.objects.acreate(owner=alice, kind="wait", queued_at=ago(61))
    busy = await Job.objects.acreate(
        owner=alice, kind="wait", status="running", updated_at=ago(59)
    )
    silent = await Job.objects.acreate(
        owner=alice, kind="wait", status="running", updated_at=ago(61)
    )
    done = await Job.objects.acreate(
        owner=alice, kind="wait", status="done", queued_at=ago(600)
    )

    failed = await sync_to_async(Job.objects.fail_abandoned)(
        now=now, queued_for=60, silent_for=60
    )

    assert failed == 2
    statuses = {job.pk: job async for job in Job.objects.all()}
    assert [
        statuses[job.pk].status for job in (fresh, expired, busy, silent, done)
    ] == [
        "queued",
        "failed",
        "running",
        "failed",
        "done",
    ]
    assert statuses[expired.pk].error == (
        "No worker started this job within 60 s: its message expired, or a "
        "worker stopped before reaching it. Is `manage.py runworker jobs` running?"
    )
    assert "went silent for over 60 s" in statuses[silent.pk].error
    assert statuses[expired.pk].finished_at == now
    # The owner's pages are told, with the state as saved.
    news = await apublished(stream_for_user(alice.pk))
    assert sorted((item["type"], item["job"]["id"]) for item in news) == sorted(
        [("failed", expired.pk), ("failed", silent.pk)]
    )
    assert {item["job"]["id"]: item["job"] for item in news} == {
        pk: statuses[pk].state() for pk in (expired.pk, silent.pk)
    }
    assert [item["job"]["version"] for item in news] == [2, 2]


def test_a_change_applies_only_to_a_job_still_in_the_queryset() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    job = Job.objects.create(owner=alice, kind="wait", status="running")
    queued = Job.objects.filter(status="queued")

    assert queued.change(job.pk, "failed", status="failed") is None
    assert Job.objects.get(pk=job.pk).version == 1
    running = Job.objects.filter(status="running")
    changed = running.change(job.pk, "progress", progress=50)
    assert changed is not None
    assert (changed.status, changed.progress, changed.version) == ("running", 50, 2)
    assert published(stream_for_user(alice.pk)) == [
        {"type": "progress", "job": changed.state()}
    ]


def test_a_change_is_published_once_its_transaction_commits_and_never_if_not() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    job = Job.objects.create(owner=alice, kind="wait")
    stream = stream_for_user(alice.pk)

    with transaction.atomic():
        Job.objects.change(job.pk, "progress", progress=10)
        assert published(stream) == []
    assert [item["job"]["progress"] for item in published(stream)] == [10]

    def change_then_roll_back() -> None:
        with transaction.atomic():
            Job.objects.change(job.pk, "progress", progress=20)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        change_then_roll_back()
    assert [item["job"]["progress"] for item in published(stream)] == [10]
    assert Job.objects.get(pk=job.pk).version == 2


# The page


def csrf_token(text: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text)
    assert match, text
    return match[1]


def page_config(text: str) -> Any:
    """Return what the page's script reads from the page: its stream and more."""
    match = re.search(
        r'<script id="jobs-stream" type="application/json">(.*?)</script>', text
    )
    assert match, text
    return json.loads(match[1])


@pytest.fixture
def browser() -> Client:
    """Return a client logged in as alice that checks CSRF tokens."""
    User.objects.create_user("alice", password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="alice", password=PASSWORD)
    return client


def test_the_page_needs_a_login() -> None:
    response = Client().get("/jobs/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/jobs/"


def test_a_submitted_job_is_saved_published_then_sent_to_the_worker(
    browser: Client, channel_layer: ChannelLayer
) -> None:
    page = browser.get("/jobs/")
    assert page.status_code == 200
    assert "No jobs yet." in page.text
    alice = User.objects.get(username="alice")
    stream = stream_for_user(alice.pk)

    response = browser.post(
        "/jobs/",
        {
            "kind": "primes",
            "number": "1000",
            "csrfmiddlewaretoken": csrf_token(page.text),
        },
    )

    assert response.status_code == 302
    assert response["Location"] == "/jobs/"
    (job,) = Job.objects.all()
    assert (job.owner.username, job.kind, job.status) == ("alice", "primes", "queued")
    assert job.parameters == {"number": 1000, "fail_halfway": False}
    assert published(stream) == [{"type": "created", "job": job.state()}]
    message = async_to_sync(channel_layer.receive)("jobs")
    assert message == {"type": "job.run", "job_id": job.pk}
    page = browser.get("/jobs/")
    assert (
        f'<tr id="job-{job.pk}" data-id="{job.pk}" data-status="queued"\n'
        '            data-version="1">'
    ) in page.text
    assert "Count the primes below 1,000" in page.text
    assert "Waiting for a worker." in page.text
    assert "/static/jobs/jobs.js" in page.text
    assert '<script type="importmap">' in page.text
    newest = async_to_sync(get_stream_store().read)(stream)
    assert page_config(page.text) == {
        "name": stream,
        "since": {"epoch": newest.epoch, "offset": 1},
        "stateUrl": "/jobs/state/",
    }


async def test_the_page_follows_its_stream_from_before_it_read_the_jobs(
    listen: Listen,
) -> None:
    # The race this is about: a change committed after the view read the
    # jobs, but published before the page subscribed.
    page = await listen("alice")
    alice = await get_user("alice")
    first = await submit(alice)
    client = AsyncClient()
    await client.aforce_login(alice)

    rendered = await client.get("/jobs/")
    second = await submit(alice)

    config = page_config(rendered.content.decode())
    assert f'id="job-{first.pk}"' in rendered.content.decode()
    assert f'id="job-{second.pk}"' not in rendered.content.decode()
    assert config["since"]["offset"] == 1
    since = Position(config["since"]["epoch"], config["since"]["offset"])
    late = StreamClient(page.client.application, "/ws/jobs/", page.client.headers)
    await late.connect()
    try:
        subscribed = await late.subscribe(config["name"], since)
        assert (subscribed["recovered"], subscribed["replayed"]) == (True, 1)
        (created,) = await late.wait_for(config["name"], 1)
        assert (created["type"], created["job"]["id"]) == ("created", second.pk)
    finally:
        await late.close()


def test_a_job_whose_transaction_rolls_back_is_never_sent_nor_published(
    browser: Client, channel_layer: ChannelLayer
) -> None:
    alice = User.objects.get(username="alice")
    assert isinstance(channel_layer, InMemoryChannelLayer)
    sent = channel_layer.stats.sent

    def submit_then_roll_back() -> None:
        with transaction.atomic():
            submit_job(alice, "wait", {"number": 1})
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        submit_then_roll_back()

    assert not Job.objects.exists()
    assert channel_layer.stats.sent == sent
    assert published(stream_for_user(alice.pk)) == []


def test_a_post_without_the_csrf_token_is_refused(browser: Client) -> None:
    response = browser.post("/jobs/", {"kind": "wait", "number": "1"})

    assert response.status_code == 403
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"kind": "primes", "number": "200000001"}, "at most 200,000,000"),
        ({"kind": "wait", "number": "121"}, "at most 120"),
        ({"kind": "wait", "number": "0"}, "greater than or equal to 1"),
        ({"kind": "nap", "number": "1"}, "Select a valid choice"),
    ],
    ids=["too-many-primes", "too-long-a-wait", "zero", "unknown-kind"],
)
def test_an_invalid_job_is_refused_with_the_reason(
    browser: Client, form: dict[str, str], expected: str
) -> None:
    token = csrf_token(browser.get("/jobs/").text)

    response = browser.post("/jobs/", {**form, "csrfmiddlewaretoken": token})

    assert response.status_code == 400
    assert expected in response.text
    assert not Job.objects.exists()


def test_a_job_the_full_worker_channel_refuses_fails_with_the_reason(
    browser: Client, channel_layer: ChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    capacity = 100  # the in-memory layer's default
    for _ in range(capacity):
        async_to_sync(channel_layer.send)("jobs", {"type": "job.run", "job_id": 0})
    token = csrf_token(browser.get("/jobs/").text)

    with caplog.at_level(logging.WARNING, logger="example_project.jobs"):
        response = browser.post(
            "/jobs/", {"kind": "wait", "number": "1", "csrfmiddlewaretoken": token}
        )

    assert response.status_code == 302
    (job,) = Job.objects.all()
    assert (job.status, job.error, job.version) == ("failed", FULL_QUEUE_ERROR, 2)
    assert "'jobs' channel is full" in caplog.text
    assert FULL_QUEUE_ERROR in browser.get("/jobs/").text
    news = published(stream_for_user(job.owner_id))
    assert [(item["type"], item["job"]["version"]) for item in news] == [
        ("created", 1),
        ("failed", 2),
    ]
    assert news[-1]["job"] == job.state()


def test_the_page_shows_the_users_own_jobs_from_the_database(browser: Client) -> None:
    alice = User.objects.get(username="alice")
    bob = User.objects.create_user("bob", password=PASSWORD)
    done = Job.objects.create(
        owner=alice,
        kind="primes",
        parameters={"number": 1000},
        status="done",
        progress=100,
        result={"below": 1000, "primes": 168},
        version=23,
    )
    lost = Job.objects.create(
        owner=alice,
        kind="wait",
        parameters={"number": 5},
        queued_at=timezone.now() - datetime.timedelta(minutes=5),
    )
    Job.objects.create(owner=bob, kind="wait", parameters={"number": 7})

    page = browser.get("/jobs/").text

    assert f'<tr id="job-{done.pk}" data-id="{done.pk}" data-status="done"' in page
    assert 'data-version="23"' in page
    assert '<progress max="100" value="100">100 %</progress>' in page
    assert "168 primes." in page
    # The in-memory layer keeps a message 60 s: this job's is long gone.
    assert f'<tr id="job-{lost.pk}" data-id="{lost.pk}" data-status="failed"' in page
    assert "No worker started this job within 60 s" in page
    assert "Wait 7 seconds" not in page
    assert page.index(f'id="job-{lost.pk}"') < page.index(f'id="job-{done.pk}"')
    assert "keeps its channel layer or its streams in\n      memory" in page
    # The pages already open hear of the failure too.
    (news,) = published(stream_for_user(alice.pk))
    assert (news["type"], news["job"]["id"], news["job"]["version"]) == (
        "failed",
        lost.pk,
        2,
    )


def test_the_jobs_are_read_again_as_json_by_their_owner_only(
    browser: Client,
) -> None:
    alice = User.objects.get(username="alice")
    bob = User.objects.create_user("bob", password=PASSWORD)
    mine = Job.objects.create(owner=alice, kind="wait", parameters={"number": 2})
    Job.objects.create(owner=bob, kind="wait", parameters={"number": 3})

    response = browser.get("/jobs/state/")

    assert response.status_code == 200
    assert response.json() == {"jobs": [mine.state()]}
    anonymous = Client().get("/jobs/state/")
    assert anonymous.status_code == 403
    assert anonymous.json() == {"error": "Log in to see your jobs."}


# The page's socket


async def test_an_anonymous_socket_is_closed_with_4003(
    websocket_communicator: CommunicatorFactory,
) -> None:
    communicator = websocket_communicator(page_application(), "/ws/jobs/")

    connected, _ = await communicator.connect()

    assert connected
    closed = await communicator.receive_output()
    assert closed == {"type": "websocket.close", "code": 4003}


async def test_a_user_may_follow_their_own_stream_only(listen: Listen) -> None:
    page = await listen("alice")
    bob = await create_user("bob")

    with pytest.raises(RequestFailed) as refused:
        await page.client.subscribe(stream_for_user(bob.pk))
    assert refused.value.code == "forbidden"
    with pytest.raises(RequestFailed) as refused:
        await page.client.subscribe("jobs.user.None")
    assert refused.value.code == "forbidden"


async def test_a_page_hears_of_the_users_jobs_only(listen: Listen) -> None:
    page = await listen("alice")
    alice, bob = await get_user("alice"), await create_user("bob")

    await submit(bob)
    mine = await submit(alice, number=2)

    created = await page.next()
    assert created == {
        "type": "created",
        "job": {
            "id": mine.pk,
            "version": 1,
            "description": "Wait 2 seconds",
            "status": "queued",
            "status_label": "Queued",
            "progress": 0,
            "result": None,
            "outcome": "Waiting for a worker.",
            "updated_at": created["job"]["updated_at"],
        },
    }
    assert datetime.datetime.fromisoformat(created["job"]["updated_at"]) == (
        mine.updated_at
    )
    assert await page.client.communicator.receive_nothing()


async def test_a_user_cancels_a_queued_job_and_the_page_hears_of_it(
    listen: Listen, channel_layer: ChannelLayer
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")
    job = await submit(alice)
    assert (await page.next())["type"] == "created"

    state = await page.client.request("cancel", {"id": job.pk})

    news = await page.next()
    assert news == {"type": "cancelled", "job": state}
    assert (state["status"], state["status_label"], state["version"]) == (
        "cancelled",
        "Cancelled",
        2,
    )
    assert state["outcome"] == "Cancelled."
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert saved.state() == state
    assert saved.finished_at is not None


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ({"id": "1"}, "bad_request", "Expected {'id': <a job's id>}, got {'id': '1'}."),
        (None, "bad_request", "Expected {'id': <a job's id>}, got None."),
        ("bob's", "not_found", "You have no job {bob}."),
        ("done", "finished", "Job {done} is done: only queued and running jobs"),
    ],
    ids=["id-not-an-integer", "no-data", "not-yours", "finished"],
)
async def test_a_cancel_the_job_does_not_allow_is_refused_with_the_reason(
    listen: Listen, data: Any, code: str, message: str
) -> None:
    page = await listen("alice")
    alice, bob = await get_user("alice"), await create_user("bob")
    jobs = {
        "bob's": await Job.objects.acreate(owner=bob, kind="wait"),
        "done": await Job.objects.acreate(owner=alice, kind="wait", status="done"),
    }
    if isinstance(data, str):
        data = {"id": jobs[data].pk}
    for name, job in (("{bob}", jobs["bob's"]), ("{done}", jobs["done"])):
        message = message.replace(name, str(job.pk))

    with pytest.raises(RequestFailed) as refused:
        await page.client.request("cancel", data)

    assert refused.value.code == code
    assert refused.value.frame["message"].startswith(message)
    assert [job.version async for job in Job.objects.order_by("pk")] == [1, 1]
    assert await apublished(page.stream) == []


def test_cancelling_a_job_says_whether_this_call_cancelled_it() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    job = Job.objects.create(owner=alice, kind="wait", status="running")

    first, cancelled = cancel_job(alice, job.pk)
    again, cancelled_again = cancel_job(alice, job.pk)

    assert (first.status, cancelled) == ("cancelled", True)
    assert (again.status, again.version, cancelled_again) == ("cancelled", 2, False)
    with pytest.raises(Job.DoesNotExist):
        cancel_job(User.objects.create_user("bob"), job.pk)


# The worker


def versions(news: list[dict[str, Any]]) -> list[int]:
    return [item["job"]["version"] for item in news]


async def test_a_job_reports_each_step_at_once_and_its_result_once_committed(
    jobs_database: str, listen: Listen, worker: Worker
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")
    job = await submit(alice, "wait", number=1)

    created = await page.next()
    started = await page.next()
    first_step = await page.next()
    # The worker has most of a second of work left: this step was published
    # at once.
    assert (await asyncio.to_thread(read_committed, job.pk)).progress < 100
    news = [created, started, first_step, *await page.until_finished(job.pk)]

    assert [item["type"] for item in news] == [
        "created",
        "started",
        *["progress"] * STEPS,
        "done",
    ]
    assert progress(news) == [
        ("queued", 0),
        ("running", 0),
        *(("running", (index + 1) * 100 // STEPS) for index in range(STEPS)),
        ("done", 100),
    ]
    # One version per change of the row, each published once, in order.
    assert versions(news) == list(range(1, STEPS + 4))
    assert news[-1]["job"]["result"] == {"waited": 1}
    assert news[-1]["job"]["outcome"] == "Done."
    # What the page heard is what was committed (rollbacks: see the last test).
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert (saved.status, saved.progress, saved.result) == ("done", 100, {"waited": 1})
    assert saved.started_at is not None
    assert saved.finished_at is not None
    assert news[-1]["job"] == saved.state()


async def test_a_failing_job_is_saved_as_failed_and_its_owner_told_why(
    jobs_database: str, listen: Listen, worker: Worker
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")
    job = await submit(alice, "primes", number=10_000, fail_halfway=True)

    news = await page.until_finished(job.pk)

    assert [item["job"]["progress"] for item in news] == [0, *range(0, 50, 5), 45]
    assert news[-1]["type"] == "failed"
    failed = news[-1]["job"]
    assert (failed["status"], failed["outcome"]) == (
        "failed",
        "Failed at 50 %, as asked.",
    )
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert (saved.status, saved.error) == ("failed", "Failed at 50 %, as asked.")
    assert failed == saved.state()


async def test_an_unexpected_error_fails_the_job_without_showing_it(
    listen: Listen,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> AsyncIterator[work.Step]:
        yield work.Step(50, {})
        raise KeyError("a secret of the worker")

    monkeypatch.setattr(work, "run", broken)
    page = await listen("alice")
    alice = await get_user("alice")

    with caplog.at_level(logging.INFO, logger="example_project.jobs"):
        job = await submit(alice)
        news = await page.until_finished(job.pk)

    assert news[-1]["job"]["outcome"] == UNEXPECTED_ERROR
    assert "secret" not in str(news)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == f"Job {job.pk} failed unexpectedly"
    assert record.exc_info is not None
    assert "a secret" in str(record.exc_info[1])


async def test_a_job_runs_once_even_if_its_message_arrives_twice(
    listen: Listen,
    worker: Worker,
    channel_layer: ChannelLayer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")

    with caplog.at_level(logging.INFO, logger="example_project.jobs"):
        job = await submit(alice, "primes", number=1000)
        await channel_layer.send("jobs", {"type": "job.run", "job_id": job.pk})
        news = await page.until_finished(job.pk)
        # A second job goes through after the duplicate was skipped.
        second = await submit(alice, "primes", number=100)
        await page.until_finished(second.pk)

    assert [item["job"]["progress"] for item in news] == [0, 0, *range(5, 105, 5), 100]
    assert f"Job {job.pk} is not queued; skipped" in caplog.text


async def test_a_message_without_an_integer_job_id_is_skipped(
    listen: Listen,
    worker: Worker,
    channel_layer: ChannelLayer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")

    with caplog.at_level(logging.ERROR, logger="example_project.jobs"):
        await channel_layer.send("jobs", {"type": "job.run", "job_id": "1"})
        job = await submit(alice, "primes", number=100)
        news = await page.until_finished(job.pk)

    assert news[-1]["type"] == "done"
    assert "Expected an integer 'job_id', got '1'; skipped" in caplog.text


async def test_a_worker_stopped_mid_job_puts_the_job_back_in_the_queue(
    listen: Listen, channel_layer: ChannelLayer
) -> None:
    worker = Worker(
        ChannelNameRouter(channel_routes), ["jobs"], channel_layer, shutdown_timeout=0.1
    )
    task = asyncio.create_task(worker.run())
    page = await listen("alice")
    alice = await get_user("alice")
    # Steps of 0.2 s: the job has seconds left, the stop waits 0.1 s for it.
    job = await submit(alice, "wait", number=4)
    assert [(await page.next())["type"] for _ in range(3)] == [
        "created",
        "started",
        "progress",
    ]

    worker.stop()
    await asyncio.wait_for(task, WAIT)

    requeued = await page.next()
    assert requeued["type"] == "requeued"
    assert (requeued["job"]["status"], requeued["job"]["progress"]) == ("queued", 0)
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert (saved.status, saved.progress, saved.started_at) == ("queued", 0, None)
    assert saved.queued_at > job.queued_at
    assert requeued["job"] == saved.state()
    message = await asyncio.wait_for(channel_layer.receive("jobs"), WAIT)
    # Handed back with the correlation id it was handled under.
    assert message.pop("correlation_id")
    assert message == {"type": "job.run", "job_id": job.pk}


async def test_a_running_job_cancelled_stops_at_its_next_step(
    listen: Listen, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")

    with caplog.at_level(logging.INFO, logger="example_project.jobs"):
        job = await submit(alice, "wait", number=2)
        while (await page.next())["type"] != "progress":
            pass
        await page.client.request("cancel", {"id": job.pk})
        news = await page.until_finished(job.pk)
        # The worker goes on with the next job once it has dropped this one.
        later = await submit(alice, "primes", number=100)
        await page.until_finished(later.pk)

    assert news[-1]["type"] == "cancelled"
    assert f"Job {job.pk} stopped running meanwhile; dropped" in caplog.text
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert saved.state() == news[-1]["job"]
    # Nothing of the job came after the cancel.
    after = page.everything[page.everything.index(news[-1]) + 1 :]
    assert job.pk not in {item["job"]["id"] for item in after}


def test_a_result_whose_transaction_rolls_back_is_never_published() -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    job = Job.objects.create(owner=alice, kind="wait", status="running")

    def finish_then_roll_back() -> None:
        with transaction.atomic():
            assert finish(job, result={"waited": 1})
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        finish_then_roll_back()

    assert Job.objects.get(pk=job.pk).status == "running"
    assert published(stream_for_user(alice.pk)) == []


# A page that loses its connection


async def test_a_page_that_drops_its_socket_mid_job_gets_every_step_once(
    listen: Listen, worker: Worker
) -> None:
    dropping, staying = await listen("alice"), await listen("alice")
    alice = await get_user("alice")
    job = await submit(alice, "wait", number=1)
    assert [(await dropping.next())["type"] for _ in range(3)] == [
        "created",
        "started",
        "progress",
    ]

    await dropping.client.drop()
    # The other page of the user stays: once it has the end, so has the stream.
    everything = [
        *[await staying.next() for _ in range(3)],
        *await staying.until_finished(job.pk),
    ]
    (resumed,) = await dropping.client.reconnect()

    assert (resumed["recovered"], resumed["replayed"]) == (True, STEPS)
    assert [*await dropping.until_finished(job.pk)][-1]["type"] == "done"
    assert dropping.everything == everything
    assert versions(dropping.everything) == list(range(1, STEPS + 4))
