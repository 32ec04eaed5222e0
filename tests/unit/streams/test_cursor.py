"""The merge of replay and live announcements, without an event loop.

The model: a stream publishes offsets 1..N; the history keeps the last
``window`` of them. A subscriber starts at some point; then announcements
arrive (some lost, some repeated), and the subscriber reads the history
whenever its cursor says so, as the stream consumer's pump does. Whatever
the interleaving, the subscriber must see each publication once, in order,
and a loss is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings, strategies as st

from django_realtime.streams.cursor import DELIVER, DUPLICATE, GAP, Cursor
from django_realtime.streams.positions import (
    EPOCH_CHANGED,
    OUTSIDE_WINDOW,
    HistoryPolicy,
    HistoryWindow,
    Position,
    Publication,
)


def pub(offset: int, epoch: str = "e1") -> Publication:
    return Publication("s", epoch, offset, str(offset))


def test_the_next_offset_is_delivered_older_ones_are_duplicates_later_ones_gaps() -> (
    None
):
    cursor = Cursor("e1", 5)
    assert cursor.verdict(pub(6)) == DELIVER
    assert cursor.verdict(pub(5)) == DUPLICATE
    assert cursor.verdict(pub(1)) == DUPLICATE
    assert cursor.verdict(pub(7)) == GAP
    assert cursor.verdict(pub(1, epoch="e2")) == GAP


def test_a_fresh_subscription_starts_at_the_newest_position_without_replay() -> None:
    window = HistoryWindow("s", "e1")
    policy = HistoryPolicy()
    for n in range(3):
        window.append(str(n), policy, now=0)
    cursor, start = Cursor.start(window.since(None, policy, 0), None)
    assert start.position == Position("e1", 3)
    assert not start.recovered
    assert start.reason is None
    assert start.replay == ()
    assert cursor.position == Position("e1", 3)


def test_a_resume_replays_what_came_after_its_position() -> None:
    window = HistoryWindow("s", "e1")
    policy = HistoryPolicy()
    for n in range(5):
        window.append(str(n), policy, now=0)
    since = Position("e1", 2)
    cursor, start = Cursor.start(window.since(since, policy, 0), since)
    assert start.recovered
    assert [p.offset for p in start.replay] == [3, 4, 5]
    assert cursor.offset == 5


def test_a_resume_in_another_epoch_is_told_why_and_starts_at_the_newest() -> None:
    window = HistoryWindow("s", "e2")
    policy = HistoryPolicy()
    window.append("1", policy, now=0)
    since = Position("e1", 9)
    cursor, start = Cursor.start(window.since(since, policy, 0), since)
    assert not start.recovered
    assert start.reason == EPOCH_CHANGED
    assert start.replay == ()
    assert cursor.position == Position("e2", 1)


def test_catch_up_after_the_window_moved_on_reports_the_loss() -> None:
    window = HistoryWindow("s", "e1")
    policy = HistoryPolicy(max_count=2)
    for n in range(6):
        window.append(str(n), policy, now=0)
    cursor = Cursor("e1", 1)
    result = cursor.catch_up(window.since(cursor.position, policy, 0))
    assert result.lost == OUTSIDE_WINDOW
    assert result.position == Position("e1", 6)
    assert cursor.position == Position("e1", 6)


def test_an_announcement_still_ahead_after_catch_up_is_delivered_after_a_loss() -> None:
    cursor = Cursor("e1", 3)
    result = cursor.settle(pub(6))
    assert result.lost == OUTSIDE_WINDOW
    assert result.position == Position("e1", 5)
    assert [p.offset for p in result.publications] == [6]
    assert cursor.offset == 6


@dataclass
class Client:
    """What the subscriber was sent: publications and losses."""

    offsets: list[int] = field(default_factory=list)
    losses: list[tuple[str, int]] = field(default_factory=list)


def run_subscriber(
    total: int,
    window_size: int,
    start_at: int,
    since: int | None,
    announced: list[int],
) -> Client:
    """Publish 1..total, announcing ``announced`` (in order, lossy, repeated)."""
    policy = HistoryPolicy(max_count=window_size, max_bytes=None, max_age=None)
    window = HistoryWindow("s", "e1")
    publications = [window.append(str(n), policy, now=0) for n in range(start_at)]
    client = Client()
    since_position = None if since is None else Position("e1", min(since, start_at))
    cursor, start = Cursor.start(
        window.since(since_position, policy, 0), since_position
    )
    if since_position is not None and not start.recovered:
        client.losses.append((start.reason or "", start.position.offset))
    client.offsets += [p.offset for p in start.replay]
    for n in range(start_at, total):
        publications.append(window.append(str(n), policy, now=0))
    for offset in announced:
        if offset <= start_at or offset > total:
            continue  # announced before the subscription listened
        publication = publications[offset - 1]
        verdict = cursor.verdict(publication)
        if verdict == DELIVER:
            cursor.advance(publication)
            client.offsets.append(offset)
        elif verdict == GAP:
            for result in (
                cursor.catch_up(window.since(cursor.position, policy, 0)),
                cursor.settle(publication),
            ):
                if result.lost is not None:
                    assert result.position is not None
                    client.losses.append((result.lost, result.position.offset))
                client.offsets += [p.offset for p in result.publications]
    return client


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, int, int | None, list[int]]:
    total = draw(st.integers(1, 40))
    window_size = draw(st.integers(1, 50))
    start_at = draw(st.integers(0, total))
    since = draw(st.none() | st.integers(0, start_at))
    announced = sorted(
        draw(st.lists(st.integers(1, total), max_size=3 * total)),
    )
    return total, window_size, start_at, since, announced


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_each_publication_reaches_the_subscriber_once_in_order_or_a_loss_is_told(
    scenario: tuple[int, int, int, int | None, list[int]],
) -> None:
    total, window_size, start_at, since, announced = scenario
    client = run_subscriber(total, window_size, start_at, since, announced)
    # Once, in order.
    assert client.offsets == sorted(set(client.offsets))
    # Every offset the subscriber skipped is covered by a loss it was told of.
    first = since if since is not None else start_at
    expected_next = first + 1
    losses = {after for _, after in client.losses}
    for offset in client.offsets:
        if offset != expected_next:
            assert expected_next - 1 in losses or any(
                after >= offset - 1 for after in losses
            ), (client, expected_next, offset)
        expected_next = offset + 1
    # The subscriber always reaches the last announcement: it was sent it,
    # or told that everything up to it was lost (and reloads).
    announced_here = [o for o in announced if start_at < o <= total]
    if announced_here:
        reached = max(client.offsets + [after for _, after in client.losses])
        assert reached >= max(announced_here)
    # Nothing is lost while the window holds everything.
    if window_size >= total:
        assert client.losses == []
        reached = client.offsets[-1] if client.offsets else first
        assert client.offsets == list(range(first + 1, reached + 1))
