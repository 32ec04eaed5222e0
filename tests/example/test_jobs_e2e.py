"""The example jobs page across processes: servers, a worker, the real Redis.

Each test runs the example project as a deployment runs it, from the
repository root: daphne and uvicorn serving pages and sockets, and
``manage.py runworker jobs`` running the jobs, all sharing channels-redis
(``REDIS_URL``) and one SQLite file. A user logs in and submits jobs through
the form of one server (real HTTP, CSRF token and session cookie) and
watches them on a socket of the other.

Every test has a Redis key prefix of its own, so that concurrent runs on
the same Redis never meet: the settings are the example project's, with
``prefix`` (and, for one test, ``expiry``) added to the layer's ``CONFIG``
by a settings module written for the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.sync.client import ClientConnection

from tests.example.test_chat_e2e import (
    EXIT_ON_SIGTERM,
    ROOT,
    STARTUP_TIMEOUT,
    Browser,
    Page,
    Serve,
    ServerProcess,
    example_db,
    example_env,
    heard,
    redis_url,
    serve,
)

__all__ = ["example_db", "redis_url", "serve"]  # fixtures used by name

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

# The count of primes below 2,000,000, the job the first test submits.
PRIMES_BELOW_2M = 148_933


class WorkerProcess(ServerProcess):
    """``manage.py runworker jobs``, its output kept in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *options: str) -> None:
        self.address = "(no address: a worker)"
        self.argv = [sys.executable, "manage.py", "runworker", "jobs", *options]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

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


@pytest.fixture
def layer_env(
    redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., dict[str, str]]]:
    """Return a function giving the environment of the project on Redis.

    ``layer_env(expiry=2)`` adds ``expiry`` to the layer's ``CONFIG``. Every
    call has a key prefix of its own; the keys are deleted at teardown.
    """
    prefixes: list[str] = []

    def env(**config: Any) -> dict[str, str]:
        module = f"jobs_e2e_{uuid.uuid4().hex}"
        prefix = f"{module}:"
        prefixes.append(prefix)
        (tmp_path / f"{module}.py").write_text(
            textwrap.dedent(
                f'''\
                """The example project's settings, on Redis keys of one test."""

                from example_project.settings import *  # noqa: F403

                CHANNEL_LAYERS["default"]["CONFIG"].update(  # noqa: F405
                    {{"prefix": {prefix!r}, **{config!r}}}
                )
                '''
            )
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
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


RunWorker = Callable[..., WorkerProcess]


@pytest.fixture
def run_worker(example_db: Path, tmp_path: Path) -> Iterator[RunWorker]:
    """Return a function that starts ``runworker jobs`` and returns it receiving.

    ``run_worker(env, "--shutdown-timeout", "1")`` passes options. Every
    worker started is killed at teardown, whatever the test did.
    """
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], *options: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(example_env(example_db, **env), log_path, *options)
        started.append(worker)
        worker.wait_until_receiving()
        return worker

    yield start
    for worker in started:
        worker.kill()


def on_server(browser: Browser, address: str) -> Browser:
    """Return ``browser`` on the server at ``address``: the same cookies."""
    other = Browser(address)
    other.cookies = browser.cookies
    other.opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(browser.cookies)
    )
    return other


def newest_job_id(page: Page) -> int:
    """Return the id of the first (newest) job on a jobs page."""
    match = re.search(r'<li id="job-(\d+)"', page.text)
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


def next_state(socket: ClientConnection, job_id: int) -> Any:
    """Return the next state of ``job_id`` the socket gets, skipping others.

    The socket also gets the jobs of earlier tests, sent when it opens.
    """
    while True:
        state = heard(socket)
        if state.get("id") == job_id:
            return state


def states_until_finished(socket: ClientConnection, job_id: int) -> list[Any]:
    """Return the states of ``job_id`` the socket gets, up to done or failed."""
    states = [next_state(socket, job_id)]
    while states[-1]["status"] not in {"done", "failed"}:
        states.append(next_state(socket, job_id))
    return states


def job_row(page: Page, job_id: int) -> str:
    """Return the list item of ``job_id`` on a jobs page."""
    match = re.search(rf'<li id="job-{job_id}".*?</li>', page.text, re.DOTALL)
    assert match, f"no job {job_id} on {page.url}:\n{page.text}"
    return match[0]


def test_a_job_submitted_on_one_server_is_watched_on_another_while_a_worker_runs_it(
    serve: Serve, run_worker: RunWorker, layer_env: Callable[..., dict[str, str]]
) -> None:
    env = layer_env()
    daphne = serve("daphne", **env)
    uvicorn = serve("uvicorn", **env)
    worker = run_worker(env)
    alice = Browser(daphne.address)
    alice.log_in("alice")
    # Alice's page on the other server, with the session of her login.
    watcher = on_server(alice, uvicorn.address)

    with watcher.open_socket("/ws/jobs/") as socket:
        job_id = submit(alice, kind="primes", number="2000000")
        states = states_until_finished(socket, job_id)
        failing_id = submit(alice, kind="wait", number="1", fail_halfway="on")
        failing = states_until_finished(socket, failing_id)

    assert [(state["status"], state["progress"]) for state in states] == [
        ("running", 0),
        *(("running", percent) for percent in range(5, 101, 5)),
        ("done", 100),
    ]
    done = states[-1]
    assert done["result"] == {"below": 2_000_000, "primes": PRIMES_BELOW_2M}
    assert done["outcome"] == "148,933 primes."
    assert done["description"] == "Count the primes below 2,000,000"
    assert [state["progress"] for state in failing] == [*range(0, 50, 5), 45]
    assert failing[-1]["status"] == "failed"
    assert failing[-1]["outcome"] == "Failed at 50 %, as asked."

    # A reload, on either server, shows the state saved in the database.
    page = watcher.request("/jobs/")
    assert page.status == 200, page
    assert 'data-status="done"' in job_row(page, job_id)
    assert "148,933 primes." in job_row(page, job_id)
    assert 'data-status="failed"' in job_row(page, failing_id)
    assert "Failed at 50 %, as asked." in job_row(page, failing_id)
    assert "in-memory channel layer" not in page.text

    assert worker.terminate() == 0, worker.output
    assert "Worker stopped." in worker.output
    assert "Traceback" not in worker.output
    assert f"Running job {job_id}: Count the primes below 2,000,000" in worker.output
    assert daphne.terminate() == EXIT_ON_SIGTERM["daphne"], daphne.output
    assert uvicorn.terminate() == EXIT_ON_SIGTERM["uvicorn"], uvicorn.output


def test_a_job_waits_in_redis_while_no_worker_runs(
    serve: Serve, run_worker: RunWorker, layer_env: Callable[..., dict[str, str]]
) -> None:
    env = layer_env()
    daphne = serve("daphne", **env)
    alice = Browser(daphne.address)
    alice.log_in("alice")

    with alice.open_socket("/ws/jobs/") as socket:
        job_id = submit(alice, kind="primes", number="1000")
        assert "Waiting for a worker." in job_row(alice.request("/jobs/"), job_id)
        worker = run_worker(env)
        states = states_until_finished(socket, job_id)

    assert states[-1]["result"] == {"below": 1000, "primes": 168}
    assert worker.terminate() == 0, worker.output


def test_a_job_whose_message_expired_before_a_worker_came_is_shown_failed(
    serve: Serve, run_worker: RunWorker, layer_env: Callable[..., dict[str, str]]
) -> None:
    env = layer_env(expiry=2)
    daphne = serve("daphne", **env)
    alice = Browser(daphne.address)
    alice.log_in("alice")
    lost_id = submit(alice, kind="primes", number="1000")
    # Nothing to await: the message is to outlive the layer's expiry unread.
    time.sleep(3)

    with alice.open_socket("/ws/jobs/") as socket:
        worker = run_worker(env)
        # Jobs are taken in order: once a later job is done, an earlier
        # message would have reached the worker.
        later_id = submit(alice, kind="primes", number="100")
        later = states_until_finished(socket, later_id)

    assert later[-1]["status"] == "done"
    assert worker.terminate() == 0, worker.output
    assert f"Running job {later_id}" in worker.output
    # The worker never got the lost job's message, not even to skip it.
    assert not re.search(rf"\bjob {lost_id}\b", worker.output, re.IGNORECASE)
    row = job_row(alice.request("/jobs/"), lost_id)
    assert 'data-status="failed"' in row
    assert "No worker started this job within 2 s: its message expired" in row


def test_a_worker_stopped_mid_job_leaves_it_to_the_next_worker(
    serve: Serve, run_worker: RunWorker, layer_env: Callable[..., dict[str, str]]
) -> None:
    env = layer_env()
    uvicorn = serve("uvicorn", **env)
    first = run_worker(env, "--shutdown-timeout", "0.5")
    alice = Browser(uvicorn.address)
    alice.log_in("alice")

    with alice.open_socket("/ws/jobs/") as socket:
        job_id = submit(alice, kind="wait", number="4")
        assert [next_state(socket, job_id)["progress"] for _ in range(2)] == [0, 5]
        assert first.terminate() == 0, first.output
        # It ran on for the shutdown timeout, then was put back.
        stopping = [next_state(socket, job_id)]
        while stopping[-1]["status"] == "running":
            stopping.append(next_state(socket, job_id))
        second = run_worker(env)
        states = states_until_finished(socket, job_id)

    *ran_on, requeued = stopping
    assert [state["progress"] for state in ran_on] == list(
        range(10, 10 + 5 * len(ran_on), 5)
    )
    assert len(ran_on) < 19, "the job ran to its end before the worker stopped"
    assert (requeued["status"], requeued["progress"]) == ("queued", 0)
    assert f"Worker stopped while running job {job_id}; queued it again" in (
        first.output
    )
    assert "Worker stopped." in first.output
    assert [state["progress"] for state in states] == [0, *range(5, 101, 5), 100]
    assert states[-1]["status"] == "done"
    assert second.terminate() == 0, second.output
