"""realtime.js in headless Chromium against a real daphne and StreamConsumer.

Each test loads the test page (:mod:`tests.browser.project`), drives the
client with ``page.evaluate`` and waits for what the page records. The
server keeps history in memory, so a server restart loses it: that is how
the tests see the client told of an ``epoch_changed`` loss.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import publish, wait

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from django_realtime.testing import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

# Start the client and follow one stream: window.c is the connection (its
# rt and state events), window.got what the subscription received.
FOLLOW = """async ([stream, options]) => {
    window.c = t.open(options);
    window.got = t.follow(c.rt, stream);
    return await got.sub.ready;
}"""


def unique(prefix: str = "s") -> str:
    """Return a stream name no other test uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def follow(page: Page, stream: str, **options: Any) -> dict[str, Any]:
    """Connect, subscribe to ``stream`` and return the ``subscribed`` info."""
    info: dict[str, Any] = page.evaluate(FOLLOW, [stream, options])
    return info


def offsets(page: Page, name: str = "got") -> list[int]:
    """Return the offsets of the publications the page received."""
    result: list[int] = page.evaluate(f"{name}.publications.map((p) => p.offset)")
    return result


def states(page: Page) -> list[str]:
    result: list[str] = page.evaluate("c.states.map((event) => event.state)")
    return result


def server_closes(page: Page, code: int) -> None:
    """Have the server close the page's connection with ``code``."""
    page.evaluate(
        "(code) => { c.rt.request('close', { code }).catch(() => {}); }", code
    )


def settle(page: Page) -> None:
    """Wait for a request's round trip: what the server sent before is in."""
    page.evaluate("() => c.rt.request('echo', null)")


# -- subscriptions ----------------------------------------------------------


def test_subscriber_receives_publications_in_order(
    page: Page, server: LiveServer
) -> None:
    stream = unique()
    info = follow(page, stream)

    publish(server, stream, 20)
    wait(page, "() => got.publications.length >= 20")
    settle(page)

    assert info == {
        "epoch": info["epoch"],
        "offset": 0,
        "recovered": False,
        "replayed": 0,
        "reason": None,
    }
    publications = page.evaluate("got.publications")
    assert [p["offset"] for p in publications] == list(range(1, 21))
    assert {p["epoch"] for p in publications} == {info["epoch"]}
    assert [p["data"] for p in publications] == [
        {"type": "tick", "n": n} for n in range(20)
    ]
    assert page.evaluate("got.sub.position") == {"epoch": info["epoch"], "offset": 20}
    assert page.evaluate("got.sub.state") == "active"


def test_handlers_are_called_by_type_and_star_gets_every_publication(
    page: Page,
) -> None:
    stream = unique()
    follow(page, stream)

    bus = page.evaluate(
        """async (stream) => {
            const bus = { tick: [], tock: [], all: [], removed: [] };
            got.sub.on("tick", (data) => bus.tick.push(data.n));
            c.rt.on(stream, "tock", (data, p) => bus.tock.push([data.n, p.offset]));
            c.rt.on(stream, "*", (data) => bus.all.push(data));
            const off = got.sub.on("tick", (data) => bus.removed.push(data.n));
            off();
            await c.rt.request("publish", { stream, count: 2, type: "tick" });
            await c.rt.request("publish", { stream, count: 1, start: 2, type: "tock" });
            await c.rt.request("publish_value", { stream, value: 42 });
            await c.rt.request("publish_value", { stream, value: { type: 7 } });
            await t.until(() => bus.all.length >= 5);
            return bus;
        }""",
        stream,
    )

    assert bus == {
        "tick": [0, 1],
        "tock": [[2, 3]],
        "all": [
            {"type": "tick", "n": 0},
            {"type": "tick", "n": 1},
            {"type": "tock", "n": 2},
            42,
            {"type": 7},
        ],
        "removed": [],
    }
    assert offsets(page) == [1, 2, 3, 4, 5]


def test_a_failing_handler_is_reported_and_the_others_still_run(page: Page) -> None:
    stream = unique()
    follow(page, stream)

    page.evaluate(
        """async (stream) => {
            window.seen = [];
            got.sub.on("tick", () => { throw new Error("handler bug"); });
            got.sub.on("tick", (data) => seen.push(data.n));
            addEventListener("error", (event) => event.preventDefault());
            await c.rt.request("publish", { stream, count: 2 });
        }""",
        stream,
    )
    wait(page, "() => seen.length >= 2")

    assert page.evaluate("seen") == [0, 1]
    assert page.evaluate("t.errors") == ["Error: handler bug", "Error: handler bug"]
    page.evaluate("t.errors.length = 0")


def test_unsubscribe_stops_the_stream_and_a_new_subscription_starts_from_now(
    page: Page, server: LiveServer
) -> None:
    stream = unique()
    follow(page, stream)
    publish(server, stream, 2)
    wait(page, "() => got.publications.length >= 2")

    page.evaluate("() => got.sub.unsubscribe()")
    publish(server, stream, 2, start=2)
    settle(page)

    assert offsets(page) == [1, 2]
    assert page.evaluate("got.sub.state") == "closed"
    info = page.evaluate(
        """async (stream) => {
            window.again = t.follow(c.rt, stream);
            return await again.sub.ready;
        }""",
        stream,
    )
    assert info["offset"] == 4
    publish(server, stream, 1, start=4)
    wait(page, "() => again.publications.length >= 1")
    assert offsets(page, "again") == [5]


def test_unsubscribing_before_the_server_answered_rejects_ready_with_closed(
    page: Page,
) -> None:
    result = page.evaluate(
        """async () => {
            window.c = t.open();
            const sub = c.rt.subscribe("never.mind");
            const unsubscribed = sub.unsubscribe();
            return [await t.outcome(sub.ready), await unsubscribed, sub.state];
        }"""
    )

    assert result == [
        {
            "ok": False,
            "name": "RealtimeError",
            "code": "closed",
            "message": "Unsubscribed before the server answered.",
        },
        None,
        "closed",
    ]
    # Never connected meanwhile: nothing to tell the server.
    settle(page)
    assert page.evaluate("t.tap.sent.filter((f) => f.stream).length") == 0


def test_a_refused_subscription_rejects_with_forbidden_and_closes(page: Page) -> None:
    result = page.evaluate(
        """async () => {
            window.c = t.open();
            window.got = t.follow(c.rt, "secret.plans");
            return await t.outcome(got.sub.ready);
        }"""
    )

    assert result == {
        "ok": False,
        "name": "RealtimeError",
        "code": "forbidden",
        "message": "Not allowed to subscribe to 'secret.plans'.",
    }
    assert page.evaluate("got.errors.map((e) => e.code)") == ["forbidden"]
    assert page.evaluate("got.sub.state") == "closed"
    # Refused, so not kept: subscribing again asks the server again.
    again = page.evaluate("() => t.outcome(t.follow(c.rt, 'secret.plans').sub.ready)")
    assert again["code"] == "forbidden"


def test_subscribe_refuses_bad_names_and_a_second_subscription_at_once(
    page: Page,
) -> None:
    follow(page, "twice")

    errors = page.evaluate(
        """() => [
            () => c.rt.subscribe("twice"),
            () => c.rt.subscribe("no spaces"),
            () => c.rt.subscribe(""),
        ].map((attempt) => {
            try { attempt(); } catch (error) { return [error.name, error.message]; }
        })"""
    )

    assert errors == [
        [
            "Error",
            "Already subscribed to twice: add handlers to that subscription with "
            "on(), or unsubscribe() it first.",
        ],
        [
            "TypeError",
            'Expected a stream name of 1 to 200 ASCII letters, digits and "_ . : @ '
            '= -", got "no spaces".',
        ],
        [
            "TypeError",
            'Expected a stream name of 1 to 200 ASCII letters, digits and "_ . : @ '
            '= -", got "".',
        ],
    ]


# -- requests ---------------------------------------------------------------


def test_request_resolves_with_the_reply_data(page: Page) -> None:
    result = page.evaluate(
        """async () => {
            const rt = t.open().rt;
            return await Promise.all([
                rt.request("echo", { hello: ["world", 1] }),
                rt.request("echo", "second"),
                rt.request("echo"),
            ]);
        }"""
    )

    assert result == [{"hello": ["world", 1]}, "second", None]


def test_requests_sent_get_distinct_ids_and_are_correlated(page: Page) -> None:
    page.evaluate(
        """async () => {
            window.c = t.open();
            await Promise.all([1, 2, 3].map((n) => c.rt.request("echo", n)));
        }"""
    )

    requests = page.evaluate("t.tap.sent.filter((f) => f.kind === 'request')")
    ids = [frame["id"] for frame in requests]
    assert len(set(ids)) == 3
    replies = page.evaluate("t.tap.received.filter((f) => f.kind === 'reply')")
    assert {reply["id"]: reply["data"] for reply in replies} == {
        frame["id"]: frame["data"] for frame in requests
    }


@pytest.mark.parametrize(
    ("request_js", "code", "message"),
    [
        (
            "rt.request('refuse', { code: 'too_rude', message: 'Mind your words.' })",
            "too_rude",
            "Mind your words.",
        ),
        ("rt.request('crash')", "request_failed", "internal error"),
        (
            "rt.request('nothing.here')",
            "unknown_request",
            "No handler for request 'nothing.here': define "
            "Feed.request_nothing_here(self, data).",
        ),
        (
            "rt.request('not a type')",
            "bad_frame",
            "Expected a request 'type' of dotted names (\"chat.post\"), at most "
            "100 characters, got 'not a type'.",
        ),
    ],
    ids=["request-error", "crash", "unknown", "bad-type"],
)
def test_request_rejects_with_the_code_of_the_error_frame(
    page: Page, request_js: str, code: str, message: str
) -> None:
    result = page.evaluate(
        f"""async () => {{
            const rt = t.open().rt;
            return await t.outcome({request_js});
        }}"""
    )

    assert result == {
        "ok": False,
        "name": "RealtimeError",
        "code": code,
        "message": message,
    }


def test_request_times_out_with_code_timeout_and_its_late_reply_is_ignored(
    page: Page,
) -> None:
    result = page.evaluate(
        """async () => {
            window.c = t.open();
            const late = await t.outcome(
                c.rt.request("sleep", { seconds: 0.5 }, { timeout: 100 })
            );
            // Handled after the slow one: its reply comes after the late reply.
            const next = await c.rt.request("echo", "after");
            return [late, next];
        }"""
    )

    assert result == [
        {
            "ok": False,
            "name": "RealtimeError",
            "code": "timeout",
            "message": "No reply to sleep within 100 ms.",
        },
        "after",
    ]
    assert page.evaluate("t.tap.received.filter((f) => f.kind === 'reply').length") == 2


def test_requests_made_before_the_connection_opens_wait_for_it(
    page: Page, server: LiveServer
) -> None:
    server.stop()
    page.evaluate(
        """() => {
            window.c = t.open();
            window.answer = c.rt.request("echo", "queued", { timeout: 20000 });
        }"""
    )
    wait(page, "() => c.states.some((event) => event.state === 'reconnecting')")

    server.start()

    assert page.evaluate("answer") == "queued"


def test_a_request_pending_when_the_connection_drops_rejects_with_disconnected(
    page: Page, server: LiveServer
) -> None:
    page.evaluate(
        """async () => {
            window.c = t.open();
            await c.rt.request("echo");
            window.pending = t.outcome(c.rt.request("sleep", { seconds: 30 }));
        }"""
    )
    wait(page, "() => t.tap.sent.some((f) => f.type === 'sleep')")

    server.kill()

    assert page.evaluate("pending") == {
        "ok": False,
        "name": "RealtimeError",
        "code": "disconnected",
        "message": "The connection closed before sleep was answered.",
    }
    server.start()
    assert page.evaluate("() => c.rt.request('echo', 'back', { timeout: 20000 })") == (
        "back"
    )


def test_close_rejects_waiting_requests_with_closed_and_stops(page: Page) -> None:
    result = page.evaluate(
        """async () => {
            window.c = t.open();
            await c.rt.request("echo");
            const sent = t.outcome(c.rt.request("sleep", { seconds: 30 }));
            window.got = t.follow(c.rt, "closing");
            c.rt.close();
            return [
                await sent,
                await t.outcome(c.rt.request("echo")),
                got.sub.state,
                c.rt.state,
            ];
        }"""
    )

    assert result == [
        {
            "ok": False,
            "name": "RealtimeError",
            "code": "closed",
            "message": "The connection closed before sleep was answered.",
        },
        {
            "ok": False,
            "name": "RealtimeError",
            "code": "closed",
            "message": "The client is closed.",
        },
        "closed",
        "closed",
    ]
    assert page.evaluate("c.states.at(-1)") == {
        "state": "closed",
        "code": 1000,
        "reason": "",
    }


# -- connection state -------------------------------------------------------


def test_state_events_follow_the_connection_through_a_drop(page: Page) -> None:
    page.evaluate("() => { window.c = t.open(); }")
    wait(page, "() => c.rt.state === 'open'")

    server_closes(page, 1011)
    wait(page, "() => c.states.filter((event) => event.state === 'open').length >= 2")
    page.evaluate("() => c.rt.close()")

    events = page.evaluate("c.states")
    assert [event["state"] for event in events] == [
        "connecting",
        "open",
        "reconnecting",
        "connecting",
        "open",
        "closed",
    ]
    assert events[0] == {"state": "connecting", "attempt": 0}
    reconnecting = events[2]
    assert reconnecting["attempt"] == 1
    assert reconnecting["code"] == 1011
    assert 0 <= reconnecting["delay"] <= 50
    assert events[3] == {"state": "connecting", "attempt": 1}
    assert events[5] == {"state": "closed", "code": 1000, "reason": ""}


def test_reconnection_delays_grow_while_the_server_is_down(
    page: Page, server: LiveServer
) -> None:
    page.evaluate(
        """() => {
            window.c = t.open({ backoff: { initial: 20, max: 160, jitter: 0 } });
        }"""
    )
    wait(page, "() => c.rt.state === 'open'")

    server.stop()
    wait(page, "() => c.states.filter((e) => e.state === 'reconnecting').length >= 6")
    server.start()
    wait(page, "() => c.states.at(-1).state === 'open'")

    delays = page.evaluate(
        "c.states.filter((e) => e.state === 'reconnecting').map((e) => e.delay)"
    )
    assert delays[:6] == [20, 40, 80, 160, 160, 160]


@pytest.fixture(scope="module")
def uvicorn_ws_url() -> Iterator[str]:
    """Yield the ws: URL of Feed served by uvicorn, which can close with 1008.

    daphne (through autobahn) sends only 1000 and 3000-4999, so an
    application on daphne cannot say 1008 at all: it gets 1011 instead.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "--host=127.0.0.1", f"--port={port}"]
    process = subprocess.Popen(
        [*command, "--log-level=warning", "tests.browser.project:application"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "uvicorn exited"
                assert time.monotonic() < deadline, "uvicorn did not listen"
                time.sleep(0.05)
        yield f"ws://127.0.0.1:{port}/ws/feed/"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("server_name", ["uvicorn 1008", "daphne 4003"])
def test_policy_close_codes_stop_reconnecting(
    page: Page, request: pytest.FixtureRequest, server_name: str
) -> None:
    code = int(server_name.split()[1])
    url = (
        request.getfixturevalue("uvicorn_ws_url")
        if server_name.startswith("uvicorn")
        else "/ws/feed/"
    )
    page.evaluate("(url) => { window.c = t.open({}, url); }", url)
    wait(page, "() => c.rt.state === 'open'")

    server_closes(page, code)
    wait(page, "() => c.rt.state === 'closed'")
    # Several backoff periods (50 ms at first): no new connection.
    time.sleep(0.3)

    assert states(page) == ["connecting", "open", "closed"]
    assert page.evaluate("c.states.at(-1).code") == code
    assert page.evaluate("() => t.outcome(c.rt.request('echo'))")["code"] == "closed"
    assert page.evaluate("t.tap.sockets.length") == 1


def test_fatal_close_codes_are_an_option(page: Page) -> None:
    page.evaluate("() => { window.c = t.open({ fatalCloseCodes: [4001] }); }")
    wait(page, "() => c.rt.state === 'open'")

    server_closes(page, 4003)
    wait(page, "() => c.states.filter((event) => event.state === 'open').length >= 2")
    server_closes(page, 4001)
    wait(page, "() => c.rt.state === 'closed'")

    assert states(page) == [
        "connecting",
        "open",
        "reconnecting",
        "connecting",
        "open",
        "closed",
    ]


def test_a_refused_handshake_looks_like_a_network_failure_and_is_retried(
    page: Page,
) -> None:
    page.evaluate("() => { window.c = t.open({}, '/ws/refuse/'); }")
    wait(page, "() => c.states.filter((e) => e.state === 'reconnecting').length >= 3")
    page.evaluate("() => c.rt.close()")

    closes = page.evaluate(
        "c.states.filter((e) => e.state === 'reconnecting').map((e) => e.code)"
    )
    # The consumer closed with 4003 before accepting: daphne answers the
    # handshake with HTTP 403, which browsers report as 1006.
    assert set(closes) == {1006}


def test_a_connection_silent_after_a_ping_is_replaced(page: Page) -> None:
    page.evaluate(
        "() => { window.c = t.open({ pingInterval: 100, pongTimeout: 150 }); }"
    )
    wait(page, "() => t.tap.sent.filter((f) => f.kind === 'ping').length >= 3")
    assert states(page) == ["connecting", "open"]

    page.evaluate("() => { t.tap.drop = () => true; }")
    event = wait(page, "() => c.states.find((e) => e.state === 'reconnecting')")
    page.evaluate("() => { t.tap.drop = null; }")
    wait(page, "() => c.states.at(-1).state === 'open'")

    assert event["code"] == 1006
    assert event["reason"] == "no answer to a ping within 150 ms"
    assert page.evaluate("t.tap.sockets.length") == 2


# -- resuming ---------------------------------------------------------------


def test_resumes_after_the_server_closes_the_socket_with_nothing_lost_or_doubled(
    page: Page, server: LiveServer
) -> None:
    stream = unique()
    follow(page, stream, backoff={"initial": 1000, "jitter": 0})
    publish(server, stream, 5)
    wait(page, "() => got.publications.length >= 5")

    server_closes(page, 1011)
    wait(page, "() => c.rt.state === 'reconnecting'")
    publish(server, stream, 5, start=5)  # while the page is away
    wait(page, "() => got.subscribed.length >= 2")
    publish(server, stream, 5, start=10)
    wait(page, "() => got.publications.length >= 15")
    settle(page)

    assert offsets(page) == list(range(1, 16))
    assert page.evaluate("got.publications.map((p) => p.data.n)") == list(range(15))
    epoch = page.evaluate("got.subscribed[0].epoch")
    resubscribe = page.evaluate("t.tap.sent.filter((f) => f.kind === 'subscribe')[1]")
    assert resubscribe["since"] == {"epoch": epoch, "offset": 5}
    assert page.evaluate("got.subscribed[1]") == {
        "epoch": epoch,
        "offset": 10,
        "recovered": True,
        "replayed": 5,
        "reason": None,
    }
    assert page.evaluate("got.lost") == []


def test_every_subscription_resumes_after_a_reconnect(
    page: Page, server: LiveServer
) -> None:
    first, second = unique(), unique()
    follow(page, first)
    page.evaluate(
        "async (s) => { window.other = t.follow(c.rt, s); await other.sub.ready; }",
        second,
    )
    publish(server, first, 2)
    publish(server, second, 3)
    wait(page, "() => got.publications.length + other.publications.length >= 5")

    server_closes(page, 1001)
    wait(page, "() => got.subscribed.length >= 2 && other.subscribed.length >= 2")
    publish(server, first, 1, start=2)
    publish(server, second, 1, start=3)
    wait(page, "() => got.publications.length + other.publications.length >= 7")

    assert offsets(page) == [1, 2, 3]
    assert offsets(page, "other") == [1, 2, 3, 4]
    assert page.evaluate(
        "[got.subscribed[1].recovered, other.subscribed[1].recovered]"
    ) == [
        True,
        True,
    ]


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_a_server_restart_that_lost_history_is_reported_as_epoch_changed(
    page: Page, server: LiveServer, how: str
) -> None:
    stream = unique()
    before = follow(page, stream)
    publish(server, stream, 3)
    wait(page, "() => got.publications.length >= 3")

    if how == "kill":
        server.kill()
        server.start()
    else:
        server.restart()
    lost = wait(page, "() => got.lost[0]")
    publish(server, stream, 2)
    wait(page, "() => got.publications.length >= 5")

    assert lost["reason"] == "epoch_changed"
    assert lost["epoch"] != before["epoch"]
    assert lost["offset"] == 0
    publications = page.evaluate("got.publications")
    assert [(p["epoch"], p["offset"]) for p in publications] == [
        (before["epoch"], 1),
        (before["epoch"], 2),
        (before["epoch"], 3),
        (lost["epoch"], 1),
        (lost["epoch"], 2),
    ]
    assert page.evaluate("got.positions.at(-1)") == {
        "epoch": lost["epoch"],
        "offset": 2,
    }


def test_a_reloaded_page_resumes_from_the_position_it_saved(
    page: Page, server: LiveServer
) -> None:
    stream = unique()
    resume = """async (stream) => {
        window.c = t.open();
        const saved = JSON.parse(sessionStorage.getItem(stream));
        window.got = t.follow(c.rt, stream, {
            since: saved,
            onPosition: (p) => sessionStorage.setItem(stream, JSON.stringify(p)),
        });
        return await got.sub.ready;
    }"""
    first = page.evaluate(resume, stream)
    publish(server, stream, 3)
    wait(page, "() => got.publications.length >= 3")

    page.reload()
    page.wait_for_function("window.t !== undefined")
    publish(server, stream, 2, start=3)
    second = page.evaluate(resume, stream)
    wait(page, "() => got.publications.length >= 2")

    assert first["recovered"] is False
    assert second == {
        "epoch": first["epoch"],
        "offset": 5,
        "recovered": True,
        "replayed": 2,
        "reason": None,
    }
    assert offsets(page) == [4, 5]
    assert page.evaluate("got.publications.map((p) => p.data.n)") == [3, 4]


def test_since_outside_the_history_window_is_reported_lost(
    page: Page, server: LiveServer
) -> None:
    stream = unique("small")  # keeps 3 messages
    publish(server, stream, 10)
    page.evaluate("() => { window.c = t.open(); }")
    epoch = page.evaluate(
        "async (s) => (await t.follow(c.rt, s).sub.ready).epoch", stream
    )
    page.evaluate("(s) => c.rt.unsubscribe(s)", stream)

    info = page.evaluate(
        """async ([stream, epoch]) => {
            window.got = t.follow(c.rt, stream, { since: { epoch, offset: 2 } });
            return await got.sub.ready;
        }""",
        [stream, epoch],
    )

    assert info == {
        "epoch": epoch,
        "offset": 10,
        "recovered": False,
        "replayed": 0,
        "reason": "outside_window",
    }
    assert page.evaluate("got.lost") == [
        {"reason": "outside_window", "epoch": epoch, "offset": 10}
    ]
    assert page.evaluate("got.sub.position") == {"epoch": epoch, "offset": 10}


# -- gaps -------------------------------------------------------------------


def test_a_gap_in_live_publications_resubscribes_and_the_server_replays_it(
    page: Page, server: LiveServer
) -> None:
    stream = unique()
    info = follow(page, stream)
    page.evaluate("(s) => t.loseOnce(s, [3, 4])", stream)

    publish(server, stream, 6)
    wait(page, "() => got.publications.length >= 6")
    settle(page)

    assert offsets(page) == [1, 2, 3, 4, 5, 6]
    assert page.evaluate("t.tap.dropped.map((f) => f.offset)") == [3, 4]
    subscribes = page.evaluate("t.tap.sent.filter((f) => f.kind === 'subscribe')")
    assert subscribes[1]["since"] == {"epoch": info["epoch"], "offset": 2}
    assert page.evaluate("got.subscribed[1].recovered") is True
    assert page.evaluate("got.lost") == []


def test_a_gap_whose_messages_left_the_window_is_reported_lost(
    page: Page, server: LiveServer
) -> None:
    stream = unique("small")  # keeps 3 messages
    info = follow(page, stream)
    page.evaluate("(s) => t.loseOnce(s, [2, 3, 4, 5, 6, 7, 8])", stream)

    publish(server, stream, 10)
    lost = wait(page, "() => got.lost[0]")
    publish(server, stream, 2, start=10)
    wait(page, "() => got.sub.position.offset >= 12")

    assert lost == {"reason": "outside_window", "epoch": info["epoch"], "offset": 10}
    assert offsets(page) == [1, 11, 12]
    assert page.evaluate("got.publications.map((p) => p.data.n)") == [0, 10, 11]


def test_publications_repeated_by_the_network_are_delivered_once(
    page: Page, server: LiveServer
) -> None:
    stream = unique()
    follow(page, stream)
    # A socket that hands every publication to the client twice.
    page.evaluate(
        """() => {
            const socket = t.tap.sockets.at(-1);
            const deliver = socket.onmessage;
            socket.onmessage = (event) => {
                deliver(event);
                if (JSON.parse(event.data).kind === "publication") deliver(event);
            };
        }"""
    )

    publish(server, stream, 4)
    wait(page, "() => got.publications.length >= 4")
    settle(page)

    assert offsets(page) == [1, 2, 3, 4]


# -- the pure helpers -------------------------------------------------------


def test_urls_resolve_against_the_page_with_websocket_schemes(
    page: Page, server: LiveServer
) -> None:
    result = page.evaluate(
        """async () => [
            t.realtime.resolveUrl("/ws/feed/"),
            t.realtime.resolveUrl("ws/x/?a=1", "https://example.com/app/page"),
            t.realtime.resolveUrl("wss://other.example/ws/"),
            t.realtime.resolveUrl("http://example.com:8000/ws/"),
            await t.outcome((async () => t.realtime.resolveUrl("ftp://example.com/"))()),
        ]"""
    )

    assert result == [
        f"{server.ws_url}/ws/feed/",
        "wss://example.com/app/ws/x/?a=1",
        "wss://other.example/ws/",
        "ws://example.com:8000/ws/",
        {
            "ok": False,
            "name": "TypeError",
            "code": None,
            "message": "Expected an http(s) or ws(s) URL, got ftp://example.com/.",
        },
    ]


def test_backoff_has_full_jitter_under_an_exponential_ceiling(page: Page) -> None:
    result = page.evaluate(
        """() => {
            const backoff = { initial: 100, max: 1000, factor: 2, jitter: 1 };
            const delay = t.realtime.backoffDelay;
            return {
                ceilings: [1, 2, 3, 4, 5, 6].map((n) => delay(n, backoff, () => 0)),
                floor: delay(3, backoff, () => 0.999999),
                half: delay(3, backoff, () => 0.5),
                noJitter: delay(3, { ...backoff, jitter: 0 }, () => 0.7),
                someJitter: delay(3, { ...backoff, jitter: 0.25 }, () => 1),
                random: Array.from({ length: 200 }, () => delay(2, backoff)),
            };
        }"""
    )

    assert result["ceilings"] == [100, 200, 400, 800, 1000, 1000]
    assert result["floor"] == 0
    assert result["half"] == 200
    assert result["noJitter"] == 400
    assert result["someJitter"] == 300
    assert all(0 <= delay <= 200 for delay in result["random"])
    assert len(set(result["random"])) > 20
