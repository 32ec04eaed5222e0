"""``manage.py realtime tail`` and ``publish`` on real stores, in process.

Each test runs the command with ``call_command`` against the in-memory
store and the SQLite store in a file of its own (both configured through
``REALTIME["STREAM_STORE"]``, as a project does). ``tail`` connects to
:mod:`tests.integration.ops.tail_app` through its middleware, as a
browser would, as a user logged in for the occasion.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_realtime.ops.cli.routes import default_stream_path, stream_routes
from django_realtime.streams import set_stream_store
from django_realtime.streams.registry import get_stream_store
from tests.integration.ops import tail_app

pytestmark = [pytest.mark.timeout(30), pytest.mark.django_db(transaction=True)]

APP = "tests.integration.ops.tail_app.application"
HISTORY = {
    "small.*": {"MAX_BYTES": 16},
    "*": {"MAX_COUNT": 1000, "MAX_BYTES": 1024 * 1024, "MAX_AGE": 3600},
}


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Configure the store, and the project's application, for one test."""
    backend: dict[str, Any] = {
        "memory": {"BACKEND": "django_realtime.streams.stores.MemoryHistoryStore"},
        "sqlite": {
            "BACKEND": "django_realtime.streams.stores.sqlite.SQLiteHistoryStore",
            "OPTIONS": {"path": str(tmp_path / "streams.sqlite3")},
        },
    }[request.param]
    realtime = {"STREAM_STORE": backend, "STREAM_HISTORY": HISTORY}
    with override_settings(REALTIME=realtime, ASGI_APPLICATION=APP):
        yield request.param
        async_to_sync(get_stream_store().close)()
    set_stream_store(None)


@pytest.fixture
def users() -> None:
    model = get_user_model()
    model.objects.create_user("alice", password="unused-Password-1")
    model.objects.create_user("bob", password="unused-Password-2")


class Output(io.StringIO):
    """Standard output that tells a waiting thread when a line has come."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = threading.Condition()

    def write(self, text: str) -> int:
        with self.wrote:
            written = super().write(text)
            self.wrote.notify_all()
        return written

    def wait_for(self, fragment: str, timeout: float = 10.0) -> None:
        with self.wrote:
            assert self.wrote.wait_for(lambda: fragment in self.getvalue(), timeout)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("realtime", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def failure(*args: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return caught.value


def frames(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_publish_prints_the_position_of_each_publication(store: str) -> None:
    first, _ = run("publish", "news", '{"type": "note", "n": 1}')
    second, _ = run("publish", "news", '"two"')
    epoch, _, offset = first.strip().rpartition(":")
    assert second.strip() == f"{epoch}:{int(offset) + 1}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("publish", "news", "{nope"), "Expected the payload as JSON text"),
        (("publish", "no spaces", "1"), "Expected a stream name"),
        (("publish", "small.x", '"far more than sixteen bytes"'), "over the stream's"),
        (("tail", "news", "--from", "nocolon"), "Expected a position as EPOCH:OFFSET"),
        (("tail", "news", "--as-user", "nobody", "--path", "/ws/notes/"), "No user"),
    ],
    ids=["invalid-json", "stream-name", "oversize", "position", "unknown-user"],
)
def test_invalid_arguments_fail_with_exit_code_2_and_say_why(
    store: str, args: tuple[str, ...], expected: str
) -> None:
    error = failure(*args)
    assert error.returncode == 2
    assert expected in str(error)


def test_tail_replays_from_a_printed_position_as_the_user_receives_it(
    store: str, users: None
) -> None:
    positions = [run("publish", "notes.alice", json.dumps(n))[0].strip() for n in "abc"]
    out, err = run(
        "tail", "notes.alice", "--as-user", "alice", "--path", "/ws/notes/",
        "--from", positions[0], "--count", "2",
    )  # fmt: skip
    subscribed, *publications = frames(out)
    assert subscribed["kind"] == "subscribed"
    assert (subscribed["recovered"], subscribed["replayed"]) == (True, 2)
    assert [(p["kind"], p["data"]) for p in publications] == [
        ("publication", "b"),
        ("publication", "c"),
    ]
    assert f"resume with --from {positions[2]}" in err
    assert ("sees only what this process publishes" in err) == (store == "memory")
    # The session made for the tail is gone with it.
    assert not Session.objects.exists()


def test_tail_refuses_a_stream_the_user_may_not_read(store: str, users: None) -> None:
    run("publish", "notes.alice", '"private"')
    error = failure(
        "tail", "notes.alice", "--as-user", "bob", "--path", "/ws/notes/"
    )  # fmt: skip
    assert error.returncode == 1
    assert "refused the subscription to 'notes.alice' (forbidden)" in str(error)


def test_tail_says_when_the_application_refuses_the_connection(store: str) -> None:
    error = failure("tail", "notes.public", "--path", "/ws/members/")
    assert error.returncode == 1
    message = str(error)
    assert "refused the WebSocket handshake of an anonymous user to /ws/members/" in (
        message
    )


def test_tail_follows_live_publications_after_saying_its_history_is_lost(
    store: str, users: None
) -> None:
    out, err = Output(), io.StringIO()
    errors: list[BaseException] = []

    def tail() -> None:
        try:
            call_command(
                "realtime", "tail", "notes.public", "--path", "/ws/notes/",
                "--from", "gone:5", "--count", "1", stdout=out, stderr=err,
            )  # fmt: skip
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=tail)
    thread.start()
    out.wait_for('"subscribed"')
    position, _ = run("publish", "notes.public", '{"type": "live"}')
    thread.join(10)
    assert not thread.is_alive()
    assert errors == []
    subscribed, publication = frames(out.getvalue())
    assert (subscribed["recovered"], subscribed["reason"]) == (False, "epoch_changed")
    assert "history after gone:5 cannot be replayed (epoch_changed)" in err.getvalue()
    assert publication["data"] == {"type": "live"}
    assert f"{publication['epoch']}:{publication['offset']}" == position.strip()


def test_tail_needs_a_path_when_the_application_has_several_stream_routes(
    store: str,
) -> None:
    error = failure("tail", "notes.public")
    assert error.returncode == 2
    assert "ws/notes/ (tests.integration.ops.tail_app.NotesConsumer)" in str(error)
    assert "--path" in str(error)


def test_the_routes_to_stream_consumers_are_found_through_middleware() -> None:
    routes = stream_routes(tail_app.application)
    assert [(r.pattern, r.consumer) for r in routes] == [
        ("ws/notes/", tail_app.NotesConsumer),
        ("ws/members/", tail_app.MembersConsumer),
    ]
    only = tail_app.URLRouter(tail_app.websocket_urlpatterns[:1])
    assert default_stream_path(tail_app.AuthMiddlewareStack(only)) == "/ws/notes/"
