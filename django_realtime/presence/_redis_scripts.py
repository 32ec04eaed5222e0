"""The Lua scripts of the Redis presence backend (the rules of :class:`~.model.Roster`).

A stream's keys share the hash tag ``{<stream>}``: ``:conns`` (connection
id -> ``[process, key]``, the process being its owner), ``:members`` (key
-> ``[connections, version, info]``), ``:v`` (the version counter) and
``:unpublished`` (key -> the member's newest change not yet known to be
published, ``[connections, version, info]``). Each change returns ``[key,
connections, version, info]``.
"""

__all__ = [
    "DEAD",
    "FORGET",
    "HEARTBEAT",
    "PUBLISHED",
    "SNAPSHOT",
    "SYNC",
    "TRACK",
    "UNPUBLISHED",
    "UNTRACK",
]

_RULES = """
local function untrack(conn, proc)
  local entry = redis.call('HGET', KEYS[1], conn)
  if not entry then return nil end
  entry = cjson.decode(entry)
  if proc and proc ~= '' and entry[1] ~= proc then return nil end
  local key = entry[2]
  redis.call('HDEL', KEYS[1], conn)
  local m = cjson.decode(redis.call('HGET', KEYS[2], key))
  local n = m[1] - 1
  local v = redis.call('INCR', KEYS[3])
  if n > 0 then
    redis.call('HSET', KEYS[2], key, cjson.encode({n, v, m[3]}))
  else
    redis.call('HDEL', KEYS[2], key)
  end
  redis.call('HSET', KEYS[4], key, cjson.encode({n, v, m[3]}))
  return {key, n, v, m[3]}
end

local function track(conn, key, info, proc, take)
  local held = redis.call('HGET', KEYS[1], conn)
  if held then
    held = cjson.decode(held)
    if take and held[1] ~= proc then
      redis.call('HSET', KEYS[1], conn, cjson.encode({proc, held[2]}))
    end
    return nil
  end
  redis.call('HSET', KEYS[1], conn, cjson.encode({proc, key}))
  local n = 1
  local old = redis.call('HGET', KEYS[2], key)
  if old then n = cjson.decode(old)[1] + 1 end
  local v = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[2], key, cjson.encode({n, v, info}))
  redis.call('HSET', KEYS[4], key, cjson.encode({n, v, info}))
  return {key, n, v, info}
end
"""

#: ARGV: conn, key, info, process (its new owner if another held it).
TRACK = (
    _RULES
    + """
local c = track(ARGV[1], ARGV[2], ARGV[3], ARGV[4], true)
if c then return {c} end
return {}
"""
)

#: ARGV: conn, process (only if it owns it; empty: whoever does).
UNTRACK = (
    _RULES
    + """
local c = untrack(ARGV[1], ARGV[2])
if c then return {c} end
return {}
"""
)

#: ARGV: process, then conn, key, info for each of its connections (one that
#: another process holds stays with it).
SYNC = (
    _RULES
    + """
local want = {}
for i = 2, #ARGV, 3 do want[ARGV[i]] = true end
local out = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if cjson.decode(all[i + 1])[1] == ARGV[1] and not want[all[i]] then
    table.insert(out, untrack(all[i], ARGV[1]))
  end
end
for i = 2, #ARGV, 3 do
  local c = track(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[1], false)
  if c then table.insert(out, c) end
end
return out
"""
)

#: KEYS: members, version counter. Returns the version and the members as
#: one JSON object, key -> {"info": ..., "connections": n, "v": version}.
SNAPSHOT = """
local all = redis.call('HGETALL', KEYS[1])
local parts = {}
for i = 1, #all, 2 do
  local m = cjson.decode(all[i + 1])
  parts[#parts + 1] = cjson.encode(all[i]) .. ':{"info":' .. m[3]
    .. ',"connections":' .. string.format('%d', m[1])
    .. ',"v":' .. string.format('%d', m[2]) .. '}'
end
return {redis.call('GET', KEYS[2]) or '0', '{' .. table.concat(parts, ',') .. '}'}
"""

#: KEYS: processes (sorted by last beat), the process's streams.
#: ARGV: process, then its streams. Returns 1 if the process was unknown.
HEARTBEAT = """
local t = redis.call('TIME')
local new = redis.call('ZADD', KEYS[1], t[1] + t[2] / 1000000, ARGV[1])
for i = 2, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return new
"""

#: KEYS: processes. ARGV: expiry, the caller's process. Returns the silent ones.
DEAD = """
local t = redis.call('TIME')
local limit = t[1] + t[2] / 1000000 - tonumber(ARGV[1])
local out = {}
for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', limit)) do
  if p ~= ARGV[2] then
    table.insert(out, {p, redis.call('SMEMBERS', KEYS[2] .. p)})
  end
end
return out
"""

#: KEYS: processes, the process's streams. ARGV: process.
FORGET = """
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

#: KEYS: unpublished. ARGV: key, version, ... of changes now published;
#: each is forgotten unless a newer change of its member came since.
PUBLISHED = """
for i = 1, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held and cjson.decode(held)[2] <= tonumber(ARGV[i + 1]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""

#: KEYS: unpublished. Returns its changes as ``[key, connections, version, info]``.
UNPUBLISHED = """
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local m = cjson.decode(all[i + 1])
  table.insert(out, {all[i], m[1], m[2], m[3]})
end
return out
"""
