"""Presence: who is here, per stream, across processes, exact after crashes.

A :class:`PresenceConsumer` says which streams have presence and what a
member's public info is; clients subscribe to ``presence:<stream>``; server
code lists members with :func:`amembers` and :func:`members`. See
``docs/topics/presence.rst``.
"""

from django_realtime.presence.api import amembers, members
from django_realtime.presence.consumer import PresenceConsumer
from django_realtime.presence.model import InvalidMemberInfo, presence_stream

__all__ = [
    "InvalidMemberInfo",
    "PresenceConsumer",
    "amembers",
    "members",
    "presence_stream",
]
