"""The outbox rules, without an event loop."""

import contextvars

from django_realtime.delivery.outbox import Outbox, activate, current_outbox, deactivate


def test_outbox_returns_messages_in_send_order_and_empties():
    outbox = Outbox(owner="a")
    outbox.add(1)
    outbox.add(2)
    assert outbox.take() == [1, 2]
    assert outbox.take() == []


def test_closed_outbox_accepts_nothing_more():
    outbox = Outbox(owner="a")
    outbox.add(1)
    assert outbox.close() == [1]
    assert not outbox.accepts("a")


def test_discard_drops_held_messages_and_counts_them():
    outbox = Outbox(owner="a")
    outbox.add(1)
    outbox.add(2)
    assert outbox.discard() == 2
    assert outbox.take() == []
    assert not outbox.accepts("a")


def test_outbox_only_holds_sends_of_its_owner():
    owner, other = object(), object()
    token = activate(Outbox(owner))
    try:
        assert current_outbox(owner) is not None
        assert current_outbox(other) is None
    finally:
        deactivate(token)
    assert current_outbox(owner) is None


def test_copied_context_sees_the_same_outbox_until_it_closes():
    owner = object()
    outbox = Outbox(owner)
    token = activate(outbox)
    copied = contextvars.copy_context()
    deactivate(token)
    # A thread or task that copied the context shares the outbox object...
    assert copied.run(current_outbox, owner) is outbox
    # ...and stops using it once the handler closed it.
    outbox.close()
    assert copied.run(current_outbox, owner) is None
