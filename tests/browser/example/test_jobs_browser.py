"""The example jobs page in Chromium: it catches up without reloading.

The example project runs as the README says, with ``manage.py runserver``
(which serves the page's scripts), on a freshly migrated SQLite file; the
tests on Redis add ``manage.py runworker jobs`` and the Redis history store
(:mod:`tests.e2e.example.test_jobs_e2e` has the fixtures). Debian's Chromium,
driven by Playwright (:mod:`tests.browser.conftest` has the fixtures), logs
in through the login form and submits jobs through the page's form.

Playwright stands between the page and the server on ``/ws/jobs/``
(:class:`SocketTap`): it records the frames both ways, and a test cuts the
page's socket and refuses to let it reconnect for a while, as a network
would, without the page's script knowing anything of it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import pytest

from tests.browser.conftest import WAIT, browser
from tests.e2e.example.test_chat_e2e import (
    PASSWORD,
    Serve,
    example_db,
    ready,
    redis_url,
    serve,
)
from tests.e2e.example.test_jobs_e2e import LayerEnv, RunWorker, layer_env, run_worker

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute

__all__ = [  # fixtures used by name
    "browser",
    "example_db",
    "layer_env",
    "redis_url",
    "run_worker",
    "serve",
]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: Changes of a job's row from its submission to its end: created, started,
#: twenty steps, done.
VERSIONS = 23


class SocketTap:
    """Stand between a page and the server on ``/ws/jobs/``.

    Every socket the page opens is connected to the server through
    Playwright, which records the frames both ways, numbered by socket.
    :meth:`cut` closes the page's socket and refuses its reconnections until
    :meth:`let_through`.
    """

    def __init__(self, page: Page) -> None:
        #: (socket number, frame) of each frame the page sent.
        self.sent: list[tuple[int, dict[str, Any]]] = []
        #: (socket number, frame) of each frame the page received.
        self.received: list[tuple[int, dict[str, Any]]] = []
        #: The page end and the server end of each socket the page opened.
        self.routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        #: The sockets cut: nothing crosses them any more.
        self.cut_off: set[int] = set()
        self.refused = 0
        self.refusing = False
        page.route_web_socket(re.compile(r"/ws/jobs/$"), self._route)

    def _route(self, route: WebSocketRoute) -> None:
        if self.refusing:
            self.refused += 1
            route.close(code=1013, reason="The test keeps this page offline.")
            return
        server = route.connect_to_server()
        number = len(self.routes)

        def to_server(message: str | bytes) -> None:
            if number not in self.cut_off:
                self.sent.append((number, json.loads(message)))
                server.send(message)

        def to_page(message: str | bytes) -> None:
            if number not in self.cut_off:
                self.received.append((number, json.loads(message)))
                route.send(message)

        route.on_message(to_server)
        server.on_message(to_page)
        self.routes.append((route, server))

    @property
    def current(self) -> int:
        """Return the number of the page's latest socket."""
        return len(self.routes) - 1

    def cut(self) -> None:
        """Close the page's socket at both ends, and refuse new ones."""
        self.refusing = True
        # Nothing crosses from now on, whatever is still in flight.
        self.cut_off.add(self.current)
        page_end, server_end = self.routes[-1]
        page_end.close(code=1006, reason="The test cut this socket.")
        server_end.close(code=1001, reason="The test cut this socket.")

    def let_through(self) -> None:
        """Let the page's next socket through."""
        self.refusing = False

    def publications(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the publications received on sockets from number ``since``."""
        return [
            frame
            for number, frame in self.received
            if number >= since and frame["kind"] == "publication"
        ]

    def subscribes(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the subscribe frames sent on sockets from number ``since``."""
        return [
            frame
            for number, frame in self.sent
            if number >= since and frame["kind"] == "subscribe"
        ]

    def answer(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Return the server's (latest) answer to a frame like ``frame``."""
        answers: list[dict[str, Any]] = [
            other
            for _, other in reversed(self.received)
            if other.get("id") == frame["id"] and other["kind"] != "publication"
        ]
        return answers[0]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """Yield a fresh browser profile: no cookies."""
    fresh = browser.new_context()
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """Yield a tab; fail the test on uncaught errors in its scripts."""
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    uncaught: list[str] = []
    tab.on("pageerror", lambda error: uncaught.append(str(error)))
    yield tab
    assert not uncaught, f"Uncaught errors in the page: {uncaught}"


def open_jobs_page(page: Page, address: str) -> None:
    """Log in as alice through the login form, on the way to the jobs page."""
    page.goto(f"http://{address}/jobs/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"http://{address}/jobs/")
    wait_until_connected(page)


def wait_until_connected(page: Page) -> None:
    page.wait_for_function(
        "document.getElementById('jobs-status').value === 'open'", timeout=WAIT
    )


def submit_job(page: Page, kind: str, number: int) -> int:
    """Submit a job through the page's form; return its id, once it is shown."""
    page.select_option("#id_kind", kind)
    page.fill("#id_number", str(number))
    page.click("#job-form button[type=submit]")
    # Post/redirect/get: a new page, with the new job on top.
    page.wait_for_load_state()
    wait_until_connected(page)
    job_id = int(page.get_attribute("#jobs tr[data-id]", "data-id") or 0)
    assert job_id, page.content()
    return job_id


def row(page: Page, job_id: int) -> dict[str, Any]:
    """Return what the page shows of ``job_id``."""
    shown: dict[str, Any] = page.evaluate(
        """(id) => {
            const row = document.getElementById(`job-${id}`);
            return {
                status: row.dataset.status,
                version: Number(row.dataset.version),
                progress: row.querySelector("progress").value,
                label: row.querySelector(".status").textContent,
                outcome: row.querySelector(".outcome").textContent,
            };
        }""",
        job_id,
    )
    return shown


def wait_for_row(page: Page, job_id: int, condition: str) -> None:
    """Wait until ``condition`` holds of the row (a JS expression of ``row``)."""
    page.wait_for_function(
        f"""(id) => {{
            const row = document.getElementById(`job-${{id}}`);
            return row && ({condition});
        }}""",
        arg=job_id,
        timeout=WAIT * 3,
    )


def saved_state(page: Page, job_id: int) -> dict[str, Any]:
    """Return the job's state as the server reads it from the database."""
    response = page.request.get(urljoin(page.url, "/jobs/state/"))
    assert response.ok, response.text()
    (job,) = [job for job in response.json()["jobs"] if job["id"] == job_id]
    return job  # type: ignore[no-any-return]


def wait_until_saved_done(page: Page, job_id: int) -> dict[str, Any]:
    """Return the job's saved state once the worker has finished it."""
    deadline = time.monotonic() + 60
    while (state := saved_state(page, job_id))["status"] != "done":
        assert time.monotonic() < deadline, state
        # Another process's database cannot be awaited; poll it briefly.
        time.sleep(0.1)
    return state


@pytest.mark.redis
@pytest.mark.parametrize(
    ("history", "recovered"),
    [(None, True), ({"MAX_COUNT": 3}, False)],
    ids=["replayed", "read-again"],
)
def test_a_page_cut_off_mid_job_catches_up_without_reloading(
    page: Page,
    serve: Serve,
    run_worker: RunWorker,
    layer_env: LayerEnv,
    history: dict[str, Any] | None,
    recovered: bool,
) -> None:
    env = layer_env(history=history)
    server = serve("runserver", wait=False, **{**env, "DJANGO_DEBUG": "1"})
    ready(server, run_worker(env, wait=False))
    tap = SocketTap(page)
    open_jobs_page(page, server.address)
    job_id = submit_job(page, "wait", 2)
    # The page of the job: its first socket, and a mark a reload would drop.
    page_socket = tap.current
    page.evaluate("window.notReloaded = true")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    wait_for_row(page, job_id, "Number(row.dataset.version) >= 5")
    tap.cut()
    page.wait_for_function(
        "document.getElementById('jobs-status').value.startsWith('reconnecting')"
    )
    before = row(page, job_id)
    # The job goes on while the page is offline; it ends before it is back.
    saved = wait_until_saved_done(page, job_id)
    assert row(page, job_id) == before
    assert before["status"] == "running"
    assert before["version"] < VERSIONS
    tap.let_through()
    # The network is back, and the browser says so: the page reconnects at
    # once rather than at the end of its backoff delay.
    page.evaluate("() => window.dispatchEvent(new Event('online'))")
    wait_for_row(page, job_id, "row.dataset.status === 'done'")

    # The page shows the job as saved, and was never reloaded.
    assert row(page, job_id) == {
        "status": "done",
        "version": VERSIONS,
        "progress": 100,
        "label": "Done",
        "outcome": "Done.",
    }
    assert saved["version"] == VERSIONS
    assert page.evaluate("window.notReloaded") is True
    assert tap.refused >= 1
    wait_until_connected(page)
    # It resumed the jobs feed from the last change it had shown before the
    # cut, having said which jobs it holds.
    first, resume, *again = tap.subscribes(since=page_socket)
    assert first["stream"] == resume["stream"] == "feed.jobs.job"
    shown = [
        p
        for p in tap.publications(since=page_socket)
        if p["data"]["row"]["version"] == before["version"]
    ][-1]
    assert resume["since"] == {"epoch": shown["epoch"], "offset": shown["offset"]}
    held = [f for _n, f in tap.sent if f.get("type") == "feed.resume"]
    assert held[-1]["data"]["feed"] == "jobs.job"
    assert job_id in held[-1]["data"]["pks"]
    answer = tap.answer(resume)
    news = [p["data"]["row"] for p in tap.publications(since=page_socket)]
    versions = [job["version"] for job in news]
    if recovered:
        # What it missed was replayed: every change of the job, once, in order.
        assert (answer["recovered"], answer["replayed"]) == (
            True,
            VERSIONS - before["version"],
        )
        assert versions == list(range(versions[0], VERSIONS + 1))
        assert {k: v for k, v in news[-1].items() if k in saved} == saved
        assert again == []
    else:
        # Gone from the history: the page took a new snapshot of the feed
        # instead, and followed it from there.
        assert (answer["recovered"], answer["reason"]) == (False, "outside_window")
        assert versions == list(range(versions[0], before["version"] + 1))
        snapshots = [
            f
            for n, f in tap.sent
            if n >= page_socket and f.get("type") == "feed.snapshot"
        ]
        assert len(snapshots) == 2
        assert len(again) == 1
    # The page subscribed first from the position it was rendered with.
    assert first["since"]["offset"] < resume["since"]["offset"]


def test_a_user_cancels_a_job_from_the_page(page: Page, serve: Serve) -> None:
    # The README's set-up: runserver on the embedded defaults, no worker.
    # In memory, so that the page warns that no worker can reach it.
    server = serve("runserver", EXAMPLE_REALTIME="memory")
    open_jobs_page(page, server.address)
    job_id = submit_job(page, "wait", 5)
    assert row(page, job_id)["status"] == "queued"
    assert page.is_visible(f"#job-{job_id} .cancel")

    page.click(f"#job-{job_id} .cancel")

    wait_for_row(page, job_id, "row.dataset.status === 'cancelled'")
    assert row(page, job_id) == {
        "status": "cancelled",
        "version": 2,
        "progress": 0,
        "label": "Cancelled",
        "outcome": "Cancelled.",
    }
    assert not page.is_visible(f"#job-{job_id} .cancel")
    assert page.is_hidden("#jobs-error")
    assert "its streams in memory" in page.inner_text("body")
