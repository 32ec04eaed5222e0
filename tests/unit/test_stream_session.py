"""The stream protocol of one connection, driven by hand: no event loop, no store.

Each test feeds a :class:`StreamSession` client frames, publications and
history reads, with an explicit ``now``, and checks the frames and actions
that come out, as a transport would do them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from django_realtime.streams.actions import (
    Authorize,
    Call,
    Close,
    Listen,
    Read,
    Send,
    Unlisten,
    Wait,
)
from django_realtime.streams.lane import READ_COST
from django_realtime.streams.limits import SessionLimits, stats
from django_realtime.streams.positions import History, Position, Publication
from django_realtime.streams.session import StreamSession, request_handler_name

EPOCH = "e1"


def pub(offset: int, stream: str = "s", data: str = '"x"') -> Publication:
    return Publication(stream, EPOCH, offset, data)


def history(
    stream: str, offset: int, first: int | None = None, reason: str | None = None
) -> History:
    """Return the history of ``stream`` at ``offset``, from ``first`` on."""
    kept = (
        () if first is None else tuple(pub(n, stream) for n in range(first, offset + 1))
    )
    return History(stream, EPOCH, offset, kept, reason)


def frames(action: Any) -> list[dict[str, Any]]:
    assert type(action) is Send, action
    return [json.loads(frame) for frame in action.frames]


def session(**limits: Any) -> StreamSession:
    return StreamSession(SessionLimits(**limits), now=0.0, label="/ws/")


def subscribe(
    s: StreamSession,
    stream: str,
    read: History,
    *,
    frame_id: int = 1,
    since: Position | None = None,
    now: float = 0.0,
) -> list[dict[str, Any]]:
    """Subscribe to ``stream``, listening first; return the frames of its start."""
    content: dict[str, Any] = {"kind": "subscribe", "id": frame_id, "stream": stream}
    if since is not None:
        content["since"] = {"epoch": since.epoch, "offset": since.offset}
    request = s.receive(content)
    assert request == Authorize(frame_id, stream, since)
    assert s.authorized(request, True) is None
    if stream not in s.listening:
        assert s.next_action(now) == Listen(stream)
        s.listened(stream)
    assert s.next_action(now) == Read(stream, since)
    s.history_read(read, now)
    return frames(s.next_action(now))


def test_a_ping_is_answered_with_a_pong_and_a_bad_frame_with_an_error() -> None:
    s = session()
    assert frames(s.receive({"kind": "ping", "id": 3})) == [{"kind": "pong", "id": 3}]
    (error,) = frames(s.receive({"kind": "launch", "id": 4}))
    assert (error["id"], error["code"]) == (4, "bad_frame")
    assert s.next_action(0.0) is None


def test_a_subscription_listens_then_reads_then_answers_and_delivers_in_order() -> None:
    s = session()
    (subscribed,) = subscribe(s, "s", history("s", 2))
    assert subscribed == {
        "kind": "subscribed",
        "id": 1,
        "stream": "s",
        "epoch": EPOCH,
        "offset": 2,
        "recovered": False,
        "reason": None,
        "replayed": 0,
    }
    for publication in (pub(3), pub(2), pub(4)):
        assert s.publication(publication) is None
    delivered = frames(s.next_action(0.0))
    assert [frame["offset"] for frame in delivered] == [3, 4]
    assert s.next_action(0.0) is None
    assert (s.queued, s.queued_bytes) == (0, 0)


def test_a_resume_replays_what_was_missed() -> None:
    s = session()
    start = subscribe(s, "s", history("s", 4, first=3), since=Position(EPOCH, 2))
    assert [frame["kind"] for frame in start] == [
        "subscribed",
        "publication",
        "publication",
    ]
    assert (start[0]["recovered"], start[0]["replayed"]) == (True, 2)


def test_a_gap_reads_the_history_from_the_cursor_and_places_the_announcement() -> None:
    s = session()
    subscribe(s, "s", history("s", 0))
    s.publication(pub(1))
    s.publication(pub(3))
    assert [f["offset"] for f in frames(s.next_action(0.0))] == [1]
    assert s.next_action(0.0) == Read("s", Position(EPOCH, 1))
    with pytest.raises(RuntimeError, match="Expected the result of Read"):
        s.next_action(0.0)
    s.history_read(history("s", 3, first=2), 0.0)
    assert [f["offset"] for f in frames(s.next_action(0.0))] == [2, 3]


def test_lost_history_after_a_gap_is_told_in_a_lost_frame() -> None:
    s = session()
    subscribe(s, "s", history("s", 0))
    s.publication(pub(9))
    assert s.next_action(0.0) == Read("s", Position(EPOCH, 0))
    s.history_read(history("s", 9, reason="outside_window"), 0.0)
    (lost,) = frames(s.next_action(0.0))
    assert (lost["kind"], lost["offset"], lost["reason"]) == (
        "lost",
        9,
        "outside_window",
    )


def test_a_resync_catches_up_once_however_often_it_is_asked() -> None:
    s = session()
    subscribe(s, "s", history("s", 0))
    for _ in range(3):
        s.resync("s")
    assert len(s.events) == 1
    assert s.next_action(0.0) == Read("s", Position(EPOCH, 0))
    s.history_read(history("s", 1, first=1), 0.0)
    assert [f["offset"] for f in frames(s.next_action(0.0))] == [1]
    assert s.next_action(0.0) is None


def test_unsubscribing_answers_then_stops_listening() -> None:
    s = session()
    subscribe(s, "s", history("s", 0))
    assert s.receive({"kind": "unsubscribe", "id": 2, "stream": "s"}) is None
    s.publication(pub(1))
    assert s.next_action(0.0) == Unlisten("s")
    assert frames(s.next_action(0.0)) == [
        {"kind": "unsubscribed", "id": 2, "stream": "s"}
    ]
    # The publication queued after it is for nobody.
    assert s.next_action(0.0) is None
    (error,) = frames(s.receive({"kind": "unsubscribe", "id": 3, "stream": "s"}))
    assert error["code"] == "not_subscribed"


def test_a_subscribe_unsubscribed_before_it_started_gets_cancelled() -> None:
    s = session()
    request = s.receive({"kind": "subscribe", "id": 1, "stream": "s"})
    assert isinstance(request, Authorize)
    s.authorized(request, True)
    s.receive({"kind": "unsubscribe", "id": 2, "stream": "s"})
    (cancelled,) = frames(s.next_action(0.0))
    assert (cancelled["id"], cancelled["code"]) == (1, "cancelled")
    assert frames(s.next_action(0.0))[0]["kind"] == "unsubscribed"


def test_a_refused_subscription_is_an_error_and_takes_no_place() -> None:
    s = session()
    request = s.receive({"kind": "subscribe", "id": 1, "stream": "secret"})
    assert isinstance(request, Authorize)
    (error,) = frames(s.authorized(request, False))
    assert (error["id"], error["code"]) == (1, "forbidden")
    assert s.subscriptions == {}
    assert s.next_action(0.0) is None


def test_subscribes_and_unsubscribes_waiting_for_an_answer_are_bounded() -> None:
    s = session(max_subscriptions=1)
    assert s.limits.max_pending == 10
    refused = []
    for n in range(20):
        output = s.receive({"kind": "subscribe", "id": 2 * n, "stream": "s"})
        if isinstance(output, Authorize):
            s.authorized(output, True)
            s.receive({"kind": "unsubscribe", "id": 2 * n + 1, "stream": "s"})
        else:
            refused.append(frames(output)[0]["code"])
    assert s.pending == 10
    assert refused == ["too_many_pending"] * 15
    assert len(s.events) == 10


def test_requests_become_calls_and_their_outcomes_become_frames() -> None:
    s = session()
    call = s.receive({"kind": "request", "id": 5, "type": "chat.post", "data": [1]})
    assert call == Call(5, "chat.post", "request_chat_post", [1])
    assert isinstance(call, Call)
    assert frames(s.replied(call, {"ok": True})) == [
        {"kind": "reply", "id": 5, "data": {"ok": True}}
    ]
    (refused,) = frames(s.refused(call, "rude", "Mind your language."))
    assert (refused["code"], refused["message"]) == ("rude", "Mind your language.")
    (failed,) = frames(s.failed(call, KeyError("boom")))
    assert (failed["code"], failed["message"]) == ("request_failed", "internal error")
    (unknown,) = frames(s.unknown_request(call, "Feed"))
    assert unknown["code"] == "unknown_request"
    assert "define Feed.request_chat_post(self, data)" in unknown["message"]
    with pytest.raises(TypeError):
        s.replied(call, object())


def test_a_request_type_names_its_handler() -> None:
    assert request_handler_name("chat.post") == "request_chat_post"


def test_a_queue_over_its_limit_is_dropped_and_caught_up_from_history() -> None:
    before = stats.slow_catch_ups
    s = session(max_queued=3)
    subscribe(s, "s", history("s", 0))
    results = [s.publication(pub(n)) for n in range(1, 5)]
    assert results == [None] * 4
    assert stats.slow_catch_ups == before + 1
    assert (s.queued, len(s.events)) == (0, 1)
    assert s.next_action(0.0) == Read("s", Position(EPOCH, 0))
    s.history_read(history("s", 4, first=1), 0.0)
    assert [f["offset"] for f in frames(s.next_action(0.0))] == [1, 2, 3, 4]


def test_the_close_policy_returns_a_close_and_then_does_nothing() -> None:
    s = session(max_queued_bytes=10, slow_client_policy="close")
    subscribe(s, "s", history("s", 0))
    assert s.publication(pub(1, data='"123456"')) is None
    assert s.publication(pub(2, data='"123456"')) == Close(4008)
    assert s.next_action(0.0) is None
    assert s.publication(pub(3)) is None
    assert len(s.events) == 0


def test_a_store_that_failed_closes_with_4011() -> None:
    s = session()
    assert s.store_failed("ConnectionError()") == Close(4011)
    assert s.next_action(0.0) is None


def _replay(n: int, stream: str) -> History:
    """A history of ``n`` publications of 1,000 characters each."""
    kept = tuple(
        Publication(stream, EPOCH, k, f'"{"x" * 998}"') for k in range(1, n + 1)
    )
    return History(stream, EPOCH, n, kept)


def test_replays_over_the_budget_wait_while_other_streams_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = session(replay_rate=1000, replay_burst=5000)
    zero = Position(EPOCH, 0)
    with caplog.at_level(logging.WARNING, "django_realtime.streams"):
        start = subscribe(s, "a", _replay(8, "a"), since=zero)
        assert len(start) == 9
        # "a" cost about 9,000 bytes: the budget is in debt.
        for frame_id, stream in ((2, "b"), (3, "c")):
            request = s.receive(
                {
                    "kind": "subscribe",
                    "id": frame_id,
                    "stream": stream,
                    "since": {"epoch": EPOCH, "offset": 0},
                }
            )
            assert isinstance(request, Authorize)
            s.authorized(request, True)
            assert s.next_action(1.0) == Listen(stream)
            s.listened(stream)
        s.publication(pub(9, "a"))
        assert [f["offset"] for f in frames(s.next_action(1.0))] == [9]
        wait = s.next_action(1.0)
    assert isinstance(wait, Wait)
    debt = READ_COST + sum(len(f) for f in _frames_of(start)) - 5000
    assert wait.until == pytest.approx(debt / 1000)
    assert caplog.text.count("Pacing the replays of /ws/") == 1
    # Once out of debt, the oldest waiting read goes.
    assert s.next_action(wait.until) == Read("b", zero)
    s.history_read(_replay(1, "b"), wait.until)
    assert frames(s.next_action(wait.until))[0]["stream"] == "b"
    assert isinstance(s.next_action(wait.until), Wait)


def _frames_of(start: list[dict[str, Any]]) -> list[str]:
    return [
        json.dumps(frame, separators=(",", ":"), ensure_ascii=False) for frame in start
    ]


def test_a_catch_up_over_the_budget_waits_and_skips_what_its_read_will_bring() -> None:
    s = session(replay_rate=100, replay_burst=100)
    subscribe(s, "s", _replay(1, "s"), since=Position(EPOCH, 0))
    s.resync("s")
    s.publication(Publication("s", EPOCH, 2, '"live"'))
    assert isinstance(s.next_action(0.0), Wait)
    assert s.subscriptions["s"].waiting
    later = 100.0
    assert s.next_action(later) == Read("s", Position(EPOCH, 1))
    s.history_read(_replay(3, "s"), later)
    assert [f["offset"] for f in frames(s.next_action(later))] == [2, 3]


def test_a_waiting_subscribe_that_is_unsubscribed_is_cancelled_once() -> None:
    s = session(replay_rate=1, replay_burst=1)
    subscribe(s, "a", _replay(1, "a"), since=Position(EPOCH, 0))
    request = s.receive(
        {
            "kind": "subscribe",
            "id": 2,
            "stream": "b",
            "since": {"epoch": EPOCH, "offset": 0},
        }
    )
    assert isinstance(request, Authorize)
    s.authorized(request, True)
    assert s.next_action(0.0) == Listen("b")
    s.listened("b")
    assert isinstance(s.next_action(0.0), Wait)
    s.receive({"kind": "unsubscribe", "id": 3, "stream": "b"})
    assert s.next_action(0.0) == Unlisten("b")
    answers = frames(s.next_action(0.0))
    assert [(f["id"], f.get("code", f["kind"])) for f in answers] == [
        (2, "cancelled"),
        (3, "unsubscribed"),
    ]
    assert s.next_action(1e9) is None


def test_subscribes_without_a_position_are_not_paced() -> None:
    s = session(replay_rate=1, replay_burst=1)
    subscribe(s, "a", _replay(5, "a"), since=Position(EPOCH, 0))
    (subscribed,) = subscribe(s, "b", history("b", 7), frame_id=2)
    assert subscribed["offset"] == 7


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="slow_client_policy"):
        SessionLimits(slow_client_policy="drop")
    with pytest.raises(ValueError, match="max_queued"):
        SessionLimits(max_queued=0)
    with pytest.raises(ValueError, match="replay rate"):
        SessionLimits(replay_rate=0)
