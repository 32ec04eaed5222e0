"""The example jobs page across processes: servers, a worker, the real Redis.

Each test runs the example project as a deployment runs it, from the
repository root: daphne and uvicorn serving pages and sockets, and
``manage.py runworker jobs`` running the jobs, all sharing Redis
(``REDIS_URL``: the channel layer and the streams' history store) and one
SQLite file. A user logs in and submits jobs through the form of one server
(real HTTP, CSRF token and session cookie) and follows the news of their
jobs on a socket of the other, as the page's script does: from the position
of the user's stream that the page was rendered with. One test runs them
on the example's defaults instead: no Redis, the SQLite file they share.

Every test has Redis keys of its own, so that concurrent runs on the same
Redis never meet: the settings are the example project's, with a ``prefix``
added to the layer's ``CONFIG`` and to the history store's ``OPTIONS`` (and,
for some tests, the layer's ``expiry`` or the streams' history limits) by a
settings module written for the test.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.example.test_chat_e2e import (
    EXIT_ON_SIGTERM,
    STARTUP_TIMEOUT,
    Browser,
    Page,
    Serve,
    ServerProcess,
    Streams,
    example_db,
    example_env,
    ready,
    redis_url,
    script_data,
    serve,
)

__all__ = ["example_db", "redis_url", "serve"]  # fixtures used by name

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

# The count of primes below 2,000,000, the job the first test submits.
PRIMES_BELOW_2M = 148_933
#: The steps of every job (work.STEPS), so its progress reports.
STEPS = 20
FINISHED = {"done", "failed", "cancelled"}


class WorkerProcess(ServerProcess):
    """``manage.py runworker jobs``, its output kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *options: str) -> None:
        self.address = "(no address: a worker)"
        self.spawn(["manage.py", "runworker", "jobs", *options], env, log_path)

    def wait_until_receiving(self) -> None:
        """Return once the worker says it receives; fail if it ends first."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "Worker receiving on jobs" not in self.output:
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.argv} exited with {self.process.returncode} before "
                    f"receiving; its output:\n{self.output}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{self.argv} is not receiving; output:\n{self.output}")
            # The output of another process cannot be awaited; poll it briefly.
            time.sleep(0.05)

    def wait_until_ready(self) -> None:
        """Return once the worker receives; fail if it ends first."""
        self.wait_until_receiving()


LayerEnv = Callable[..., dict[str, str]]

# The settings of one test: the example project's, on Redis keys of its own.
SETTINGS_MODULE = """\
# The example project's settings, on Redis keys of one test.
from django_realtime.conf import DEFAULTS
from example_project.settings import *  # noqa: F403

CHANNEL_LAYERS["default"]["CONFIG"].update(  # noqa: F405
    {"prefix": @PREFIX@ + ":", **@CONFIG@}
)
# The project's Redis history store, under the test's prefix.
_store = REALTIME["STREAM_STORE"]  # noqa: F405
assert _store["BACKEND"].endswith(".RedisHistoryStore"), _store
_options = {**_store.get("OPTIONS", {}), "prefix": @PREFIX@}
_history = REALTIME.get("STREAM_HISTORY", DEFAULTS["STREAM_HISTORY"])  # noqa: F405
REALTIME = {
    **REALTIME,  # noqa: F405
    "STREAM_STORE": {**_store, "OPTIONS": _options},
    "STREAM_HISTORY": {**@LIMITS@, **_history},
}
"""


@pytest.fixture
def layer_env(redis_url: str, tmp_path: Path) -> Iterator[LayerEnv]:
    """Return a function giving the environment of the project on Redis.

    ``layer_env(expiry=2)`` adds ``expiry`` to the layer's ``CONFIG``;
    ``layer_env(history={"MAX_COUNT": 5})`` sets the history limits of the
    jobs' streams. Every call has a key prefix of its own; the keys are
    deleted at teardown.
    """
    prefixes: list[str] = []

    def env(history: dict[str, Any] | None = None, **config: Any) -> dict[str, str]:
        module = f"jobs_e2e_{uuid.uuid4().hex}"
        prefixes.append(module)
        limits = (
            {} if history is None else {"jobs.user.*": history, "feed.jobs.*": history}
        )
        (tmp_path / f"{module}.py").write_text(
            SETTINGS_MODULE.replace("@PREFIX@", repr(module))
            .replace("@CONFIG@", repr(config))
            .replace("@LIMITS@", repr(limits))
        )
        return {
            "REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": module,
            "PYTHONPATH": str(tmp_path),
            "DJANGO_DEBUG": "0",
        }

    yield env
    client = redis.Redis.from_url(redis_url)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


RunWorker = Callable[..., WorkerProcess]


@pytest.fixture
def run_worker(example_db: Path, tmp_path: Path) -> Iterator[RunWorker]:
    """Return a function that starts ``runworker jobs`` and returns it receiving.

    ``run_worker(env, "--shutdown-timeout", "1")`` passes options;
    ``wait=False`` returns at once, as ``serve`` does. Every
    worker started is killed at teardown, whatever the test did.
    """
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], *options: str, wait: bool = True) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        # The file the servers of this test share (see serve()).
        env = {"EXAMPLE_REALTIME_PATH": str(tmp_path / "realtime.sqlite3"), **env}
        worker = WorkerProcess(example_env(example_db, **env), log_path, *options)
        started.append(worker)
        if wait:
            worker.wait_until_receiving()
        return worker

    yield start
    for worker in started:
        worker.kill()


def newest_job_id(page: Page) -> int:
    """Return the id of the first (newest) job on a jobs page."""
    match = re.search(r'<tr id="job-(\d+)"', page.text)
    assert match, f"no job on {page.url}:\n{page.text}"
    return int(match[1])


def submit(browser: Browser, **form: str) -> int:
    """Submit a job through the page's form; return its id."""
    page = browser.request("/jobs/")
    assert page.status == 200, page
    after = browser.submit("/jobs/", form, page)
    # Post/redirect/get: back on the page, with the new job on top.
    assert (after.status, after.url) == (200, f"{browser.origin}/jobs/"), after
    return newest_job_id(after)


def job_row(page: Page, job_id: int) -> str:
    """Return the table row of ``job_id`` on a jobs page."""
    match = re.search(rf'<tr id="job-{job_id}".*?</tr>', page.text, re.DOTALL)
    assert match, f"no job {job_id} on {page.url}:\n{page.text}"
    return match[0]


class JobsSocket:
    """A jobs page's socket, following the user's stream as jobs.js does.

    It reads the page of the browser's server for the stream and the
    position to subscribe from (or resumes from ``since``, as the page's
    script does after a reconnection), then opens the socket.
    """

    def __init__(self, browser: Browser, since: dict[str, Any] | None = None) -> None:
        self.config = script_data(browser.request("/jobs/"), "jobs-stream")
        self.stream: str = self.config["name"]
        self._sockets = contextlib.ExitStack()
        self.socket = self._sockets.enter_context(browser.open_socket("/ws/jobs/"))
        self.streams = Streams(self.socket)
        self.subscribed = self.streams.subscribe(
            self.stream, since or self.config["since"]
        )
        self.read = 0

    def __enter__(self) -> JobsSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self._sockets.close()

    @property
    def position(self) -> dict[str, Any]:
        """Return the position of the last news received."""
        return self.streams.positions[self.stream]

    def next(self) -> dict[str, Any]:
        """Return the next news on the stream."""
        self.read += 1
        news: dict[str, Any] = self.streams.wait_for(self.stream, self.read)[-1]
        return news

    def next_of(self, job_id: int) -> dict[str, Any]:
        """Return the next news of ``job_id``, skipping others."""
        while True:
            news = self.next()
            if news["job"]["id"] == job_id:
                return news

    def until_finished(self, job_id: int) -> list[dict[str, Any]]:
        """Return the news of ``job_id`` up to its end."""
        news = [self.next_of(job_id)]
        while news[-1]["job"]["status"] not in FINISHED:
            news.append(self.next_of(job_id))
        return news


def steps(news: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """Return the (type, status, progress) of each news."""
    return [
        (item["type"], item["job"]["status"], item["job"]["progress"]) for item in news
    ]


def versions(news: list[dict[str, Any]]) -> list[int]:
    return [item["job"]["version"] for item in news]


def test_a_job_submitted_on_one_server_is_watched_on_another_while_a_worker_runs_it(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env()
    daphne = serve("daphne", wait=False, **env)
    uvicorn = serve("uvicorn", wait=False, **env)
    worker = run_worker(env, wait=False)
    ready(daphne, uvicorn, worker)
    alice = Browser(daphne.address)
    alice.log_in("alice")
    # Alice's page on the other server, with the session of her login.
    watcher = alice.on(uvicorn.address)

    with JobsSocket(watcher) as page:
        job_id = submit(alice, kind="primes", number="2000000")
        news = page.until_finished(job_id)
        failing_id = submit(alice, kind="wait", number="1", fail_halfway="on")
        failing = page.until_finished(failing_id)

    assert steps(news) == [
        ("created", "queued", 0),
        ("started", "running", 0),
        *(("progress", "running", percent) for percent in range(5, 101, 5)),
        ("done", "done", 100),
    ]
    # Every change of the row, once, in order, whichever process made it.
    assert versions(news) == list(range(1, STEPS + 4))
    done = news[-1]["job"]
    assert done["result"] == {"below": 2_000_000, "primes": PRIMES_BELOW_2M}
    assert done["outcome"] == "148,933 primes."
    assert done["description"] == "Count the primes below 2,000,000"
    assert [item["job"]["progress"] for item in failing] == [0, 0, *range(5, 50, 5), 45]
    assert failing[-1]["type"] == "failed"
    assert failing[-1]["job"]["outcome"] == "Failed at 50 %, as asked."

    # A reload, on either server, shows the state saved in the database.
    page_html = watcher.request("/jobs/")
    assert page_html.status == 200, page_html
    assert 'data-status="done"' in job_row(page_html, job_id)
    assert f'data-version="{done["version"]}"' in job_row(page_html, job_id)
    assert "148,933 primes." in job_row(page_html, job_id)
    assert 'data-status="failed"' in job_row(page_html, failing_id)
    assert "Failed at 50 %, as asked." in job_row(page_html, failing_id)
    assert "in\n      memory" not in page_html.text

    assert worker.terminate() == 0, worker.output
    assert "Worker stopped." in worker.output
    assert "Traceback" not in worker.output
    assert f"Running job {job_id}: Count the primes below 2,000,000" in worker.output
    assert daphne.terminate() == EXIT_ON_SIGTERM["daphne"], daphne.output
    assert uvicorn.terminate() == EXIT_ON_SIGTERM["uvicorn"], uvicorn.output


def test_a_page_that_loses_its_socket_mid_job_catches_up_on_another_server(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env()
    daphne = serve("daphne", wait=False, **env)
    uvicorn = serve("uvicorn", wait=False, **env)
    ready(daphne, uvicorn, run_worker(env, wait=False))
    alice = Browser(daphne.address)
    alice.log_in("alice")

    with JobsSocket(alice) as staying:
        dropping = JobsSocket(alice.on(uvicorn.address))
        job_id = submit(alice, kind="wait", number="2")
        first = [dropping.next_of(job_id) for _ in range(3)]
        dropping.close()
        # The page that stayed has the whole job: so has the stream.
        everything = staying.until_finished(job_id)

    # The page comes back, to the other server, from where it was.
    with JobsSocket(alice, since=dropping.position) as resumed:
        rest = resumed.until_finished(job_id)

    assert [item["type"] for item in first] == ["created", "started", "progress"]
    answer = resumed.subscribed
    assert (answer["recovered"], answer["replayed"]) == (True, len(everything) - 3)
    assert [*first, *rest] == everything
    assert versions(everything) == list(range(1, STEPS + 4))


def test_a_page_away_longer_than_the_history_is_told_and_reads_the_jobs_again(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env(history={"MAX_COUNT": 5})
    daphne = serve("daphne", wait=False, **env)
    ready(daphne, run_worker(env, wait=False))
    alice = Browser(daphne.address)
    alice.log_in("alice")

    with JobsSocket(alice) as staying:
        since = staying.config["since"]
        job_id = submit(alice, kind="primes", number="1000")
        staying.until_finished(job_id)

    with JobsSocket(alice, since=since) as page:
        answer = page.subscribed

    assert (answer["recovered"], answer["reason"]) == (False, "outside_window")
    state = alice.request("/jobs/state/")
    assert state.status == 200, state
    assert '"status": "done"' in state.text
    assert f'"id": {job_id}' in state.text


def test_a_user_cancels_a_running_job_over_the_socket(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env()
    uvicorn = serve("uvicorn", wait=False, **env)
    worker = run_worker(env, wait=False)
    ready(uvicorn, worker)
    alice = Browser(uvicorn.address)
    alice.log_in("alice")

    with JobsSocket(alice) as page:
        job_id = submit(alice, kind="wait", number="10")
        while page.next_of(job_id)["type"] != "progress":
            pass
        state = page.streams.request("cancel", {"id": job_id})
        news = page.until_finished(job_id)
        later_id = submit(alice, kind="primes", number="100")
        assert page.until_finished(later_id)[-1]["type"] == "done"

    assert news[-1] == {"type": "cancelled", "job": state}
    assert state["status"] == "cancelled"
    assert worker.terminate() == 0, worker.output
    assert f"Job {job_id} stopped running meanwhile; dropped" in worker.output
    assert 'data-status="cancelled"' in job_row(alice.request("/jobs/"), job_id)


def test_a_job_waits_in_redis_while_no_worker_runs(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env()
    daphne = serve("daphne", **env)
    alice = Browser(daphne.address)
    alice.log_in("alice")

    with JobsSocket(alice) as page:
        job_id = submit(alice, kind="primes", number="1000")
        assert "Waiting for a worker." in job_row(alice.request("/jobs/"), job_id)
        worker = run_worker(env)
        news = page.until_finished(job_id)

    assert news[-1]["job"]["result"] == {"below": 1000, "primes": 168}
    assert worker.terminate() == 0, worker.output


def test_a_job_whose_message_expired_before_a_worker_came_is_shown_failed(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env(expiry=1)
    daphne = serve("daphne", **env)
    alice = Browser(daphne.address)
    alice.log_in("alice")
    lost_id = submit(alice, kind="primes", number="1000")
    # Nothing to await: the message is to outlive the layer's expiry unread.
    time.sleep(1.5)

    with JobsSocket(alice) as page:
        # Rendering the page marked the lost job failed: the socket hears it.
        failed = page.next_of(lost_id)
        worker = run_worker(env)
        # Jobs are taken in order: once a later job is done, an earlier
        # message would have reached the worker.
        later_id = submit(alice, kind="primes", number="100")
        later = page.until_finished(later_id)

    assert (failed["type"], failed["job"]["version"]) == ("failed", 2)
    assert later[-1]["type"] == "done"
    assert worker.terminate() == 0, worker.output
    assert f"Running job {later_id}" in worker.output
    # The worker never got the lost job's message, not even to skip it.
    assert not re.search(rf"\bjob {lost_id}\b", worker.output, re.IGNORECASE)
    row = job_row(alice.request("/jobs/"), lost_id)
    assert 'data-status="failed"' in row
    assert "No worker started this job within 1 s: its message expired" in row
    assert failed["job"]["outcome"].startswith("No worker started this job within 1 s")


def test_a_worker_stopped_mid_job_leaves_it_to_the_next_worker(
    serve: Serve, run_worker: RunWorker, layer_env: LayerEnv
) -> None:
    env = layer_env()
    uvicorn = serve("uvicorn", wait=False, **env)
    first = run_worker(env, "--shutdown-timeout", "0.5", wait=False)
    ready(uvicorn, first)
    alice = Browser(uvicorn.address)
    alice.log_in("alice")

    with JobsSocket(alice) as page:
        # Steps of 0.1 s: seconds of work left when the worker is stopped.
        job_id = submit(alice, kind="wait", number="2")
        assert [page.next_of(job_id)["type"] for _ in range(3)] == [
            "created",
            "started",
            "progress",
        ]
        assert first.terminate() == 0, first.output
        # It ran on for the shutdown timeout, then was put back.
        stopping = [page.next_of(job_id)]
        while stopping[-1]["type"] == "progress":
            stopping.append(page.next_of(job_id))
        second = run_worker(env)
        news = page.until_finished(job_id)

    *ran_on, requeued = stopping
    assert [item["job"]["progress"] for item in ran_on] == list(
        range(10, 10 + 5 * len(ran_on), 5)
    )
    assert len(ran_on) < 19, "the job ran to its end before the worker stopped"
    assert steps([requeued]) == [("requeued", "queued", 0)]
    assert f"Worker stopped while running job {job_id}; queued it again" in (
        first.output
    )
    assert "Worker stopped." in first.output
    assert steps(news) == [
        ("started", "running", 0),
        *(("progress", "running", percent) for percent in range(5, 101, 5)),
        ("done", "done", 100),
    ]
    assert second.terminate() == 0, second.output


def test_on_the_defaults_a_worker_runs_a_job_and_the_page_follows_it(
    serve: Serve, run_worker: RunWorker
) -> None:
    # No Redis: the server and the worker meet in the example's SQLite file.
    chat = serve("runserver", wait=False)
    worker = run_worker({}, wait=False)
    ready(chat, worker)
    alice = Browser(chat.address)
    alice.log_in("alice")

    with JobsSocket(alice) as page:
        job_id = submit(alice, kind="wait", number="1")
        news = page.until_finished(job_id)

    assert steps(news) == [
        ("created", "queued", 0),
        ("started", "running", 0),
        *(("progress", "running", percent) for percent in range(5, 101, 5)),
        ("done", "done", 100),
    ]
    assert versions(news) == list(range(1, STEPS + 4))
    assert "in\n      memory" not in alice.request("/jobs/").text
    assert worker.terminate() == 0, worker.output
    assert "Traceback" not in worker.output
    assert chat.terminate() == 0, chat.output
