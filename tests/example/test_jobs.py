"""The example jobs app in-process: the work, the page, its socket, the worker.

The worker runs as ``runworker`` runs it, in a
:class:`~django_realtime.worker.Worker` fed from the in-memory channel layer
through the project's ``channel_routes``; the owner's page listens through a
communicator on the page's socket route, logged in with a session cookie.
The worker's tests run on SQLite and on PostgreSQL: a result must never
reach the page before its row is visible to other connections.
Real processes and Redis: tests/example/test_jobs_e2e.py.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connections, transaction
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from django_realtime.auth import AuthMiddlewareStack
from django_realtime.layers import InMemoryChannelLayer
from django_realtime.layers.base import ChannelLayer
from django_realtime.routing import ChannelNameRouter, URLRouter
from django_realtime.testing import WebsocketCommunicator
from django_realtime.worker import Worker
from example_project.jobs import work
from example_project.jobs.models import Job, group_for_user
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
from tests.example.test_chat_consumer import PASSWORD, session_cookie
from tests.session_databases import DATABASES, PinnedRouter, database

__all__ = ["database"]  # a fixture used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]

CommunicatorFactory = Callable[..., WebsocketCommunicator]
WAIT = 10.0


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

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ROOT_URLCONF = __name__
    settings.TEMPLATES = example.TEMPLATES
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    settings.LOGIN_URL = "login"


@pytest.fixture
def jobs_database(database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Keep jobs beside users and sessions: on SQLite, then on PostgreSQL."""
    monkeypatch.setattr(PinnedRouter, "models", PinnedRouter.models | {("jobs", "job")})
    return database


def page_application() -> Any:
    """Return the page's socket routes behind the project's auth stack."""
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


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


Listen = Callable[[str], Awaitable[WebsocketCommunicator]]


@pytest.fixture
def listen(
    websocket_communicator: CommunicatorFactory, channel_layer: ChannelLayer
) -> Listen:
    """Return a coroutine function that logs a user in and opens their page socket.

    The first call for a username creates the user.
    """
    cookies: dict[str, bytes] = {}

    async def listen(username: str) -> WebsocketCommunicator:
        if username not in cookies:
            cookies[username] = await session_cookie(username)
        communicator = websocket_communicator(
            page_application(), "/ws/jobs/", [(b"cookie", cookies[username])]
        )
        connected, _ = await communicator.connect()
        assert connected, f"the page socket of {username} was refused"
        return communicator

    return listen


async def states_until_finished(
    page: WebsocketCommunicator, job_id: int
) -> list[dict[str, Any]]:
    """Return the states of ``job_id`` the page gets, up to done or failed."""
    states = []
    while True:
        state = await page.receive_json_from(timeout=WAIT)
        if state["id"] != job_id:
            continue
        states.append(state)
        if state["status"] in {"done", "failed"}:
            return states


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


# The page


def csrf_token(text: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text)
    assert match, text
    return match[1]


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


def test_a_submitted_job_is_saved_then_sent_to_the_worker(
    browser: Client, channel_layer: ChannelLayer
) -> None:
    page = browser.get("/jobs/")
    assert page.status_code == 200
    assert "No jobs yet." in page.text

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
    message = async_to_sync(channel_layer.receive)("jobs")
    assert message == {"type": "job.run", "job_id": job.pk}
    page = browser.get("/jobs/")
    assert f'<li id="job-{job.pk}" data-id="{job.pk}" data-status="queued"' in page.text
    assert "Count the primes below 1,000" in page.text
    assert "Waiting for a worker." in page.text
    assert "/static/jobs/jobs.js" in page.text


def test_a_job_whose_transaction_rolls_back_is_never_sent(
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
    assert (job.status, job.error) == ("failed", FULL_QUEUE_ERROR)
    assert "'jobs' channel is full" in caplog.text
    assert FULL_QUEUE_ERROR in browser.get("/jobs/").text


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
    )
    lost = Job.objects.create(
        owner=alice,
        kind="wait",
        parameters={"number": 5},
        queued_at=timezone.now() - datetime.timedelta(minutes=5),
    )
    Job.objects.create(owner=bob, kind="wait", parameters={"number": 7})

    page = browser.get("/jobs/").text

    assert f'<li id="job-{done.pk}" data-id="{done.pk}" data-status="done"' in page
    assert '<progress max="100" value="100">100 %</progress>' in page
    assert "168 primes." in page
    # The in-memory layer keeps a message 60 s: this job's is long gone.
    assert f'<li id="job-{lost.pk}" data-id="{lost.pk}" data-status="failed"' in page
    assert "No worker started this job within 60 s" in page
    assert "Wait 7 seconds" not in page
    assert page.index(f'id="job-{lost.pk}"') < page.index(f'id="job-{done.pk}"')
    assert "in-memory channel layer" in page


# The page's socket


async def test_an_anonymous_socket_is_refused(
    websocket_communicator: CommunicatorFactory, channel_layer: ChannelLayer
) -> None:
    communicator = websocket_communicator(page_application(), "/ws/jobs/")

    connected, _ = await communicator.connect()

    assert not connected


async def test_a_socket_gets_the_users_jobs_then_news_of_them_only(
    listen: Listen, channel_layer: ChannelLayer
) -> None:
    page = await listen("alice")
    assert await page.receive_nothing()
    await page.disconnect()
    alice, bob = await get_user("alice"), await create_user("bob")
    mine = await Job.objects.acreate(owner=alice, kind="wait", parameters={"number": 2})
    await Job.objects.acreate(owner=bob, kind="wait", parameters={"number": 3})

    page = await listen("alice")
    state = await page.receive_json_from()
    assert state == {
        "id": mine.pk,
        "description": "Wait 2 seconds",
        "status": "queued",
        "status_label": "Queued",
        "progress": 0,
        "result": None,
        "outcome": "Waiting for a worker.",
        "updated_at": state["updated_at"],
    }
    assert datetime.datetime.fromisoformat(state["updated_at"]) == mine.updated_at
    assert await page.receive_nothing()

    news = {"id": mine.pk, "status": "running"}
    await channel_layer.group_send(
        group_for_user(alice.pk), {"type": "job.update", "job": news}
    )
    await channel_layer.group_send(
        group_for_user(bob.pk), {"type": "job.update", "job": {"id": 0}}
    )

    assert await page.receive_json_from() == news
    assert await page.receive_nothing()


async def test_a_socket_answers_a_message_with_an_error(listen: Listen) -> None:
    page = await listen("alice")

    await page.send_json_to({"kind": "wait"})

    assert await page.receive_json_from() == {
        "error": "This socket only reports on jobs; submit them with the form."
    }


# The worker


@pytest.mark.django_db(transaction=True, databases=DATABASES)
async def test_a_job_reports_each_step_at_once_and_its_result_once_committed(
    jobs_database: str, listen: Listen, worker: Worker
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")
    job = await submit(alice, "wait", number=3)

    running = await page.receive_json_from(timeout=WAIT)
    first_step = await page.receive_json_from(timeout=WAIT)
    # The worker has seconds of work left: this step was sent at once.
    assert (await asyncio.to_thread(read_committed, job.pk)).progress < 100
    states = [running, first_step, *await states_until_finished(page, job.pk)]

    assert [(state["status"], state["progress"]) for state in states] == [
        ("running", 0),
        *(("running", (index + 1) * 100 // STEPS) for index in range(STEPS)),
        ("done", 100),
    ]
    assert states[-1]["result"] == {"waited": 3}
    assert states[-1]["outcome"] == "Done."
    updated = [state["updated_at"] for state in states]
    assert updated == sorted(updated)
    # What the page heard is what was committed (rollbacks: see the last test).
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert (saved.status, saved.progress, saved.result) == ("done", 100, {"waited": 3})
    assert saved.started_at is not None
    assert saved.finished_at is not None
    assert states[-1] == saved.state()


@pytest.mark.django_db(transaction=True, databases=DATABASES)
async def test_a_failing_job_is_saved_as_failed_and_its_owner_told_why(
    jobs_database: str, listen: Listen, worker: Worker
) -> None:
    page = await listen("alice")
    alice = await get_user("alice")
    job = await submit(alice, "primes", number=10_000, fail_halfway=True)

    states = await states_until_finished(page, job.pk)

    assert [state["progress"] for state in states] == [*range(0, 50, 5), 45]
    failed = states[-1]
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
        states = await states_until_finished(page, job.pk)

    assert states[-1]["outcome"] == UNEXPECTED_ERROR
    assert "secret" not in str(states)
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
        states = await states_until_finished(page, job.pk)
        # A second job goes through after the duplicate was skipped.
        second = await submit(alice, "primes", number=100)
        await states_until_finished(page, second.pk)

    assert [state["progress"] for state in states] == [*range(0, 105, 5), 100]
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
        states = await states_until_finished(page, job.pk)

    assert states[-1]["status"] == "done"
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
    job = await submit(alice, "wait", number=60)
    assert (await page.receive_json_from(timeout=WAIT))["status"] == "running"
    assert (await page.receive_json_from(timeout=WAIT))["progress"] == 5

    worker.stop()
    await asyncio.wait_for(task, WAIT)

    requeued = await page.receive_json_from()
    assert (requeued["status"], requeued["progress"]) == ("queued", 0)
    saved = await asyncio.to_thread(read_committed, job.pk)
    assert (saved.status, saved.progress, saved.started_at) == ("queued", 0, None)
    assert saved.queued_at > job.queued_at
    message = await asyncio.wait_for(channel_layer.receive("jobs"), WAIT)
    assert message == {"type": "job.run", "job_id": job.pk}


def test_a_result_whose_transaction_rolls_back_is_never_sent(
    channel_layer: ChannelLayer,
) -> None:
    alice = User.objects.create_user("alice", password=PASSWORD)
    job = Job.objects.create(owner=alice, kind="wait", status="running")
    assert isinstance(channel_layer, InMemoryChannelLayer)
    sent = channel_layer.stats.sent

    def finish_then_roll_back() -> None:
        with transaction.atomic():
            assert finish(job, result={"waited": 1})
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        finish_then_roll_back()

    assert Job.objects.get(pk=job.pk).status == "running"
    assert channel_layer.stats.sent == sent
