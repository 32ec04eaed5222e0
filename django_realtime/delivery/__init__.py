"""Deliver what consumers and Django code send: held, after commit, or now.

The rule that decides when a send goes out is in
:mod:`django_realtime.delivery.sends`; the public entry points are the four
functions below, for code outside consumers (views, signal receivers,
workers).
"""

from django_realtime.delivery.sends import (
    asend_to_channel,
    asend_to_group,
    send_to_channel,
    send_to_group,
)

__all__ = ["asend_to_channel", "asend_to_group", "send_to_channel", "send_to_group"]
