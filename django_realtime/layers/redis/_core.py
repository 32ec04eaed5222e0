"""The Redis layer's rules, with no I/O: names, wire formats, subscriptions.

:class:`~django_realtime.layers.redis.RedisChannelLayer` keeps three kinds of
state in three places, and this module says how each is named and encoded:

- Process-local channels (``new_channel()`` names, with ``!``) live in the
  memory of the process that made them. The 16 hexadecimal characters before
  the ``!`` are that process's id; other processes reach them through the
  process's pub/sub topic.
- Groups with process-local members are kept in each process; a process
  subscribes to one pub/sub topic per such group, and ``group_send``
  publishes once to it.
- Normal channels (no ``!``, read by workers) are Redis lists; group members
  that are not local to the process that added them (normal channels, or
  another process's channels) are kept in a Redis hash per group.

Queue entries carry their deadline (wall-clock seconds, big-endian double)
in front of the msgpack payload, so that expiry is exact per message. The Lua
scripts below read it with Redis' ``struct`` library.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from django_realtime.layers._core import LayerStats

#: Length of a process id: hexadecimal characters just before the ``!``.
PROCESS_ID_LENGTH = 16

#: Bytes in front of a group topic message: the id of the publishing process.
ORIGIN_LENGTH = PROCESS_ID_LENGTH

_PROCESS_ID = re.compile(rf"^[0-9a-f]{{{PROCESS_ID_LENGTH}}}$")
_DEADLINE = struct.Struct(">d")
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def process_of(channel: str) -> str | None:
    """Return the process id in a process-local channel name.

    Returns:
        The :data:`PROCESS_ID_LENGTH` characters before the ``!``, or ``None``
        when ``channel`` has no ``!`` (a normal channel).

    Raises:
        ValueError: ``channel`` has a ``!`` but no process id before it: the
            name was not made by this layer's ``new_channel()``.
    """
    bang = channel.find("!")
    if bang == -1:
        return None
    process = channel[bang - PROCESS_ID_LENGTH : bang]
    if bang < PROCESS_ID_LENGTH or not _PROCESS_ID.match(process):
        raise ValueError(
            f"Channel {channel!r} has a '!' but no process id before it; "
            "process-local names must come from RedisChannelLayer.new_channel()."
        )
    return process


@dataclass(frozen=True, slots=True)
class Names:
    """Name the Redis keys and pub/sub topics of one layer prefix."""

    prefix: str

    @property
    def queue_prefix(self) -> str:
        """Return what comes before a normal channel's name in its list key."""
        return f"{self.prefix}:q:"

    @property
    def process_topic_prefix(self) -> str:
        """Return what comes before a process id in its pub/sub topic."""
        return f"{self.prefix}:process:"

    def queue_key(self, channel: str) -> str:
        """Return the key of the list holding a normal channel's messages."""
        return f"{self.prefix}:q:{channel}"

    def group_key(self, group: str) -> str:
        """Return the key of the hash of a group's members kept in Redis."""
        return f"{self.prefix}:g:{group}"

    def group_topic(self, group: str) -> str:
        """Return the pub/sub topic of a group."""
        return f"{self.prefix}:group:{group}"

    def process_topic(self, process: str) -> str:
        """Return the pub/sub topic of a process's local channels."""
        return f"{self.prefix}:process:{process}"

    def key_pattern(self) -> str:
        """Return a ``SCAN MATCH`` pattern for every key of this prefix."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + ":*"


# Wire formats


def pack_entry(deadline: float, payload: bytes) -> bytes:
    """Return a queue entry: ``payload`` preceded by its deadline."""
    return _DEADLINE.pack(deadline) + payload


def unpack_deadline(entry: bytes) -> float:
    """Return the deadline in front of a queue entry."""
    (deadline,) = _DEADLINE.unpack_from(entry)
    return float(deadline)


#: Bytes of a queue entry before its payload.
ENTRY_HEADER = _DEADLINE.size


def pack_direct(channel: str, payload: bytes) -> bytes:
    """Return a process topic message: the channel, a NUL, the payload."""
    return channel.encode() + b"\0" + payload


def split_direct(data: bytes) -> tuple[str, memoryview]:
    """Split a process topic message into its channel and payload.

    Raises:
        ValueError: ``data`` has no NUL separator.
    """
    nul = data.index(b"\0")
    return data[:nul].decode(), memoryview(data)[nul + 1 :]


def member_value(joined: float, capacity: int) -> str:
    """Return the value stored for a member in a group hash."""
    return f"{joined!r} {capacity}"


# Reconnection and reporting


def backoff_delay(
    attempt: int, *, base: float = 0.05, cap: float = 2.0, jitter: float = 0.0
) -> float:
    """Return how long to wait before reconnection attempt ``attempt``.

    The delay doubles from ``base`` up to ``cap``; ``jitter`` (0 to 1, a
    random draw) shortens it by up to half, so that many processes cut off
    together do not reconnect in step.
    """
    delay: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * (1 - jitter / 2)


class ReportGate:
    """Turn a stream of drop events into at most one report per interval.

    Each key (a channel, a group) reports its first event at once; later
    events within ``interval`` seconds are counted and reported together by
    the next event after it, or by :meth:`overdue` if none comes.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        # key -> (time of the last report, events not yet reported)
        self._keys: dict[str, tuple[float, int]] = {}

    def add(self, key: str, count: int, now: float) -> int:
        """Record ``count`` events; return how many to report now (0: none)."""
        last, pending = self._keys.get(key, (float("-inf"), 0))
        pending += count
        if now - last < self.interval:
            self._keys[key] = (last, pending)
            return 0
        self._keys[key] = (now, 0)
        if len(self._keys) > 10_000:
            self._forget_quiet(now)
        return pending

    def overdue(self, now: float) -> list[tuple[str, int]]:
        """Return (and clear) the counts still unreported after an interval."""
        due = [
            (key, pending)
            for key, (last, pending) in self._keys.items()
            if pending and now - last >= self.interval
        ]
        for key, _ in due:
            self._keys[key] = (now, 0)
        return due

    def _forget_quiet(self, now: float) -> None:
        for key, (last, pending) in list(self._keys.items()):
            if not pending and now - last >= self.interval:
                del self._keys[key]


@dataclass(slots=True)
class RedisLayerStats:
    """Count what happened to messages since the layer was created.

    Attributes:
        local: Counters of the queues of this process's channels: messages
            put on them (``sent``), received, rejected with ``ChannelFull``,
            dropped from group sends because full, and expired.
        published: Messages published to other processes (group sends and
            sends to another process's channels).
        remote_dropped: Messages from other processes to this process's
            channels that were dropped because the channel was full.
        undeliverable: Sends to another process's channel that no process
            was subscribed to receive (the process has ended).
        queue_dropped: Group deliveries to normal channels skipped because
            the channel was full.
        queue_expired: Messages on normal channels discarded unread because
            they expired.
        reconnects: Times the pub/sub connection was restored after a loss.
        disconnected_seconds: Total time the pub/sub connection was down
            (between noticing the loss and restoring it).
    """

    local: LayerStats = field(default_factory=LayerStats)
    published: int = 0
    remote_dropped: int = 0
    undeliverable: int = 0
    queue_dropped: int = 0
    queue_expired: int = 0
    reconnects: int = 0
    disconnected_seconds: float = 0.0


class Subscriptions:
    """Track which pub/sub topics are wanted and which are confirmed.

    A topic is *active* once Redis has confirmed every ``SUBSCRIBE`` sent for
    it on the current connection, so a message published after that reaches
    this process. Counting outstanding confirmations (rather than taking the
    first) keeps "subscribe, unsubscribe, subscribe" correct: the first
    confirmation does not stand for the second subscription.
    """

    def __init__(self) -> None:
        self.connected = False
        self._wanted: set[str] = set()
        self._active: set[str] = set()
        self._unconfirmed: dict[str, int] = {}

    @property
    def wanted(self) -> frozenset[str]:
        """Return the topics this process wants to receive."""
        return frozenset(self._wanted)

    def is_wanted(self, topic: str) -> bool:
        """Return whether ``topic`` is wanted."""
        return topic in self._wanted

    def is_active(self, topic: str) -> bool:
        """Return whether ``topic`` is confirmed on the current connection."""
        return topic in self._active

    def want(self, topic: str) -> bool:
        """Want ``topic``; return whether to send ``SUBSCRIBE`` for it now.

        It is sent only for a newly wanted topic while connected; topics
        wanted while disconnected are subscribed by :meth:`connection_made`.
        """
        if topic in self._wanted:
            return False
        self._wanted.add(topic)
        if not self.connected:
            return False
        self._unconfirmed[topic] = self._unconfirmed.get(topic, 0) + 1
        return True

    def unwant(self, topic: str) -> bool:
        """Stop wanting ``topic``; return whether to send ``UNSUBSCRIBE`` now."""
        if topic not in self._wanted:
            return False
        self._wanted.discard(topic)
        self._active.discard(topic)
        return self.connected

    def subscribed(self, topic: str) -> bool:
        """Record a ``subscribe`` confirmation; return whether ``topic`` is
        now active (the moment to wake whoever waits for it).
        """
        left = self._unconfirmed.get(topic, 0) - 1
        if left > 0:
            self._unconfirmed[topic] = left
            return False
        self._unconfirmed.pop(topic, None)
        if topic in self._wanted and topic not in self._active:
            self._active.add(topic)
            return True
        return False

    def connection_made(self) -> list[str]:
        """Start a new connection; return the topics to subscribe on it."""
        self.connected = True
        self._active.clear()
        topics = sorted(self._wanted)
        self._unconfirmed = dict.fromkeys(topics, 1)
        return topics

    def connection_lost(self) -> None:
        """Forget what the lost connection had confirmed."""
        self.connected = False
        self._active.clear()
        self._unconfirmed.clear()

    def forget(self, topics: Iterable[str]) -> list[str]:
        """Stop wanting every topic in ``topics``; return those that were."""
        dropped = [topic for topic in topics if topic in self._wanted]
        for topic in dropped:
            self._wanted.discard(topic)
            self._active.discard(topic)
        return dropped


# Lua scripts. Keys of normal channels are built inside the group script from
# its members, so the layer runs on a single Redis server, not a cluster.

_TRIM = """
local function trim(key, now)
  local expired = 0
  while true do
    local head = redis.call('LINDEX', key, 0)
    if not head then break end
    if struct.unpack('>d', head) > now then break end
    redis.call('LPOP', key)
    expired = expired + 1
  end
  return expired
end
"""

#: Push an entry on a normal channel unless it is full.
#: KEYS: the list. ARGV: now, entry, capacity, time to live in ms.
#: Returns {1 if pushed else 0, expired entries dropped from the head}.
SEND_SCRIPT = (
    _TRIM
    + """
local expired = trim(KEYS[1], tonumber(ARGV[1]))
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {0, expired}
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, expired}
"""
)

#: Deliver a group message: to the members kept in Redis (normal channels
#: and other processes' channels), then one PUBLISH to the group's topic.
#: KEYS: the group hash. ARGV: group topic, origin process id, payload, now,
#: group expiry, queue entry, time to live in ms, queue key prefix, process
#: topic prefix. Returns {live members in the hash, expired memberships
#: removed, expired queue entries dropped, full channel...}.
GROUP_SEND_SCRIPT = (
    _TRIM
    + f"""
local now = tonumber(ARGV[4])
local cutoff = now - tonumber(ARGV[5])
local fields = redis.call('HGETALL', KEYS[1])
local result = {{0, 0, 0}}
for i = 1, #fields, 2 do
  local channel = fields[i]
  local joined, capacity = string.match(fields[i + 1], '^(%S+) (%S+)$')
  if tonumber(joined) <= cutoff then
    redis.call('HDEL', KEYS[1], channel)
    result[2] = result[2] + 1
  else
    result[1] = result[1] + 1
    local bang = string.find(channel, '!', 1, true)
    if bang then
      local process = string.sub(channel, bang - {PROCESS_ID_LENGTH}, bang - 1)
      redis.call('PUBLISH', ARGV[9] .. process, channel .. '\\0' .. ARGV[3])
    else
      local key = ARGV[8] .. channel
      result[3] = result[3] + trim(key, now)
      if redis.call('LLEN', key) >= tonumber(capacity) then
        result[#result + 1] = channel
      else
        redis.call('RPUSH', key, ARGV[6])
        redis.call('PEXPIRE', key, ARGV[7])
      end
    end
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ARGV[3])
return result
"""
)
