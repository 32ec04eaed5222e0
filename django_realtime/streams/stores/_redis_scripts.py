"""The Lua scripts of the Redis history store, and the arguments they take.

Each script is one atomic step on one stream's two keys (see
:mod:`django_realtime.streams.stores.redis` for the layout):

- :data:`PUBLISH` gives a payload the next offset, appends it to the log,
  trims the log to the stream's policy, refreshes both keys' time to live
  and announces the publication on the stream's pub/sub channel.
- :data:`PUBLISH_ONCE` does the same unless a key given with it was
  published already (a relayed outbox row).
- :data:`READ` trims the log by age, then answers the epoch, the newest and
  oldest kept offsets, and the payloads after a position when they can all
  be replayed.

Both start from the same prologue: when the meta hash is missing (never
used, flushed, expired) the stream starts over at offset 0 in the epoch the
client proposed, a fresh random name, and any log left behind is deleted.
So it does when no process listens to the stream and its newest
publication is older than ``max_age`` plus :data:`LOG_TTL_MARGIN` (when
the log would have expired in Redis): its history is gone, and nobody
follows it.

Shared arguments (``ARGV``): the candidate epoch, ``now`` (seconds, from
the store's clock, so that ages follow it), ``max_count``, ``max_bytes``
and ``max_age`` (empty for no limit), the time to live of the meta hash
and of the log in milliseconds (:func:`policy_args`), and the stream's
pub/sub channel.
"""

from __future__ import annotations

import math

from django_realtime.streams.positions import HistoryPolicy

#: Seconds an age-bounded log outlives its newest entry's age limit, so that
#: a clock running behind Redis's never cuts the window short.
LOG_TTL_MARGIN = 60.0

# Log entries have the id "<offset>-0" and two fields: d (the payload) and
# t (the publication time); the meta hash has epoch, offset (the newest),
# bytes (the payload bytes in the log) and at (the newest's time).
_PROLOGUE = f"""
local LOG_TTL_MARGIN = {LOG_TTL_MARGIN!r}
local meta, log = KEYS[1], KEYS[2]
local now = tonumber(ARGV[2])
local max_count, max_bytes, max_age =
    tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- Drop the oldest entries the policy no longer keeps. Return the byte
-- total of what is left, the oldest kept offset (false if none is) and
-- whether anything was dropped.
local function trim(kept, total)
    local start, dropped = '-', false
    -- Usually one entry goes (the count is one over) and the next stays.
    local size = 2
    if max_count and kept > max_count then size = kept - max_count + 1 end
    while kept > 0 do
        local batch = redis.call('XRANGE', log, start, '+', 'COUNT', size)
        size = math.min(size * 4, 256)
        if #batch == 0 then break end
        for i = 1, #batch do
            local id, fields = batch[i][1], batch[i][2]
            if (max_count and kept > max_count)
                or (max_bytes and total > max_bytes)
                or (max_age and now - tonumber(fields[4]) > max_age) then
                kept = kept - 1
                total = total - #fields[2]
                dropped = true
            else
                if dropped then redis.call('XTRIM', log, 'MINID', id) end
                return total, tonumber(string.match(id, '^%d+')), dropped
            end
        end
        start = '(' .. batch[#batch][1]
    end
    local had = redis.call('DEL', log) > 0
    return 0, false, had
end

local state = redis.call('HMGET', meta, 'epoch', 'offset', 'bytes', 'at')
local epoch, offset, total = state[1], tonumber(state[2]), tonumber(state[3])
local kept = redis.call('XLEN', log)
if epoch and max_age and state[4]
    and now - tonumber(state[4]) > max_age + LOG_TTL_MARGIN
    and redis.call('PUBSUB', 'NUMSUB', ARGV[8])[2] == 0 then
    epoch = false -- everything aged out and nobody listens: forget it
end
local created = not epoch
if created then
    -- The history is gone: start a new epoch, never reusing a position.
    epoch, offset, total = ARGV[1], 0, 0
    if kept > 0 then
        redis.call('DEL', log)
        kept = 0
    end
elseif kept == 0 then
    total = 0 -- the log expired before the meta hash
end
"""

# ARGV[9] is the payload.
_APPEND = """
offset = offset + 1
local data = ARGV[9]
redis.call('XADD', log, offset .. '-0', 'd', data, 't', ARGV[2])
total = trim(kept + 1, total + #data)
redis.call(
    'HSET', meta, 'epoch', epoch, 'offset', offset, 'bytes', total, 'at', ARGV[2])
redis.call('PEXPIRE', meta, ARGV[6])
redis.call('PEXPIRE', log, ARGV[7])
redis.call('PUBLISH', ARGV[8], epoch .. ' ' .. offset .. ' ' .. data)
"""

#: ``ARGV[9]``: the payload. Returns ``{epoch, offset}``.
PUBLISH = _PROLOGUE + _APPEND + "return {epoch, offset}\n"

#: As :data:`PUBLISH`, once per key: ``KEYS[3]`` remembers, for as long as
#: the meta hash lives, the position of the publication made with it. Returns
#: ``{epoch, offset, 0}``, or ``{epoch, offset, 1}`` with the remembered
#: position when the key was published already (nothing is published).
PUBLISH_ONCE = (
    """
local done = redis.call('GET', KEYS[3])
if done then
    local space = string.find(done, ' ', 1, true)
    return {string.sub(done, 1, space - 1), tonumber(string.sub(done, space + 1)), 1}
end
"""
    + _PROLOGUE
    + _APPEND
    + """
redis.call('SET', KEYS[3], epoch .. ' ' .. offset, 'PX', ARGV[6])
return {epoch, offset, 0}
"""
)

#: ``ARGV[9]``, ``ARGV[10]``: the position asked for (an empty offset for
#: none). Returns ``{epoch, newest, oldest, payload...}`` with the payloads
#: after the position, oldest first, only when every one of them is kept.
READ = (
    _PROLOGUE
    + """
local oldest, dropped
total, oldest, dropped = trim(kept, total)
if created or dropped then
    redis.call('HSET', meta, 'epoch', epoch, 'offset', offset, 'bytes', total)
end
redis.call('PEXPIRE', meta, ARGV[6])
if oldest then
    redis.call('PEXPIRE', log, ARGV[7])
else
    oldest = offset + 1
end
local reply = {epoch, offset, oldest}
local since = tonumber(ARGV[10])
if since and ARGV[9] == epoch and since >= 0 and since >= oldest - 1
    and since < offset then
    local entries = redis.call('XRANGE', log, tostring(since + 1), '+')
    for i = 1, #entries do
        reply[i + 3] = entries[i][2][2]
    end
end
return reply
"""
)


def policy_args(policy: HistoryPolicy, expiry: float) -> tuple[str, str, str, int, int]:
    """Return the policy's limits and the keys' time to live, as script args.

    Args:
        policy: The stream's history policy.
        expiry: Seconds a stream's position outlives its last use.

    Returns:
        ``max_count``, ``max_bytes``, ``max_age`` (empty for no limit), the
        meta hash's and the log's time to live in milliseconds. The meta
        hash lives ``expiry`` seconds (at least as long as the log); an
        age-bounded log lives only as long as its newest entry can be
        replayed, plus :data:`LOG_TTL_MARGIN`.
    """
    max_age = policy.max_age
    log_seconds = None if max_age is None else max_age + LOG_TTL_MARGIN
    meta_seconds = max(expiry, log_seconds or 0.0)
    return (
        "" if policy.max_count is None else str(policy.max_count),
        "" if policy.max_bytes is None else str(policy.max_bytes),
        "" if max_age is None else repr(float(max_age)),
        math.ceil(meta_seconds * 1000),
        math.ceil((log_seconds or meta_seconds) * 1000),
    )
