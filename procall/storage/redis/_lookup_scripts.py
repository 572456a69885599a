"""Lua scripts of the routing view (see ``procall.storage.redis.registry`` for the keys).

Each script runs atomically in Redis, which is what makes fencing, "announce
each departure exactly once" and "one MediaServer per call" hold with any number
of Lookup processes. Times come from Redis' own clock (``TIME``), so Lookups
with skewed clocks agree on expiry. Numbers pass in and out as decimal strings:
Lua numbers are doubles, exact up to 2**53, and ``%.0f`` keeps them integral.
Scripts also touch keys they compute from a prefix (``ARGV``), which is fine
for a single Redis or a Sentinel-managed master, not for Redis Cluster.
"""

from __future__ import annotations

__all__ = [
    "ALLOCATION_STATE",
    "CLAIM",
    "CLEAR_HOME",
    "DEREGISTER",
    "HEARTBEAT",
    "RELEASE",
    "SET_HOME",
    "SNAPSHOT",
    "SWEEP",
]

_PRELUDE = """
local function int(n) return string.format('%.0f', n) end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- A counter that went missing (Redis restarted empty) restarts from the clock in
-- microseconds, above every number it handed out before.
local function next_number(key)
  if redis.call('EXISTS', key) == 0 then redis.call('SET', key, int(now_us)) end
  return redis.call('INCR', key)
end
-- The largest epoch a caller may present: one issued by the counter, or one from before
-- Redis lost the counter (those are below the clock; an hour allows for clock skew
-- between Redis hosts). Anything above would let one bad caller push epochs to 2**53.
local function max_epoch(counter)
  return math.max(counter, now_us + 3600 * 1000000)
end
local function publish(channel, seq_key, event)
  event['seq'] = int(next_number(seq_key))
  redis.call('PUBLISH', channel, cjson.encode(event))
end
"""

#: KEYS: server hash, index, epochs, closed, known, epoch counter, seq.
#: ARGV: server id, epoch (0 = new run), state JSON, ttl ms, start ms (0 = now), channel.
#: Returns {'ok', epoch, kind ('' when nothing changed)}, {'stale', newer epoch} or
#: {'invalid', epoch} (never issued).
HEARTBEAT = (
    _PRELUDE
    + """
local id, epoch, state = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ttl, start, channel = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local high = tonumber(redis.call('HGET', KEYS[3], id) or '0')
local counter = tonumber(redis.call('GET', KEYS[6]) or '0')
if epoch == 0 then
  if counter < high then redis.call('SET', KEYS[6], int(high)) end
  epoch = next_number(KEYS[6])
else
  if epoch > max_epoch(counter) then return {'invalid', int(epoch)} end
  if epoch < high then return {'stale', int(high)} end
  if tonumber(redis.call('HGET', KEYS[4], id) or '-1') == epoch then
    return {'stale', int(epoch)}
  end
  -- the counter was lost with Redis' data: new epochs must stay above this one
  if counter < epoch then redis.call('SET', KEYS[6], int(epoch)) end
end
local old = redis.call('HMGET', KEYS[1], 'epoch', 'state', 'start')
local alive = old[1] ~= false
local old_epoch = 0
if alive then old_epoch = tonumber(old[1]) end
if old_epoch > epoch then return {'stale', int(old_epoch)} end
if (not alive) and redis.call('ZSCORE', KEYS[2], id) then
  -- it expired and no sweep has announced that yet: announce it before it returns
  publish(channel, KEYS[7], {kind='LEFT', id=id})
end
local kind = ''
if not alive then kind = 'JOINED'
elseif old_epoch ~= epoch or old[2] ~= state then kind = 'UPDATED' end
local start_ms
if alive and old_epoch == epoch then start_ms = old[3]
elseif start > 0 then start_ms = int(start)
else start_ms = int(now_ms) end
redis.call('HSET', KEYS[1], 'epoch', int(epoch), 'state', state, 'start', start_ms,
           'hb', int(now_ms))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], int(now_ms + ttl), id)
if epoch > high then redis.call('HSET', KEYS[3], id, int(epoch)) end
if kind ~= '' then
  redis.call('HSET', KEYS[5], id, cjson.encode({epoch=int(epoch), state=state, start=start_ms}))
  publish(channel, KEYS[7], {kind=kind, id=id, epoch=int(epoch), state=state,
                             start=start_ms, hb=int(now_ms)})
end
return {'ok', int(epoch), kind}
"""
)

#: KEYS: server hash, index, epochs, closed, seq, epoch counter.
#: ARGV: server id, epoch, channel.
#: Returns 1 when the run's registration is gone afterwards, 0 when a newer run owns it
#: (or the epoch was never issued).
DEREGISTER = (
    _PRELUDE
    + """
local id, epoch, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local high = tonumber(redis.call('HGET', KEYS[3], id) or '0')
if epoch < high then return 0 end
if epoch > max_epoch(tonumber(redis.call('GET', KEYS[6]) or '0')) then return 0 end
redis.call('HSET', KEYS[4], id, int(epoch))
if epoch > high then redis.call('HSET', KEYS[3], id, int(epoch)) end
redis.call('DEL', KEYS[1])
if redis.call('ZREM', KEYS[2], id) == 1 then
  publish(channel, KEYS[5], {kind='LEFT', id=id})
end
return 1
"""
)

#: KEYS: index, seq.  ARGV: server hash prefix, channel, batch size.
#: Announces (once) every indexed server whose hash has expired; returns how many.
SWEEP = (
    _PRELUDE
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now_ms), 'LIMIT', 0,
                       tonumber(ARGV[3]))
local gone = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    publish(ARGV[2], KEYS[2], {kind='LEFT', id=id})
    gone = gone + 1
  end
end
return gone
"""
)

#: KEYS: index, seq.  ARGV: server hash prefix.
#: Returns {seq, id, epoch, state, start, hb, id, ...} for every live server.
SNAPSHOT = """
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('HMGET', ARGV[1] .. id, 'epoch', 'state', 'start', 'hb')
  if v[1] then
    table.insert(out, id); table.insert(out, v[1]); table.insert(out, v[2])
    table.insert(out, v[3]); table.insert(out, v[4])
  end
end
return out
"""

_LIVE = """
local function live(prefix, id)
  local v = redis.call('HMGET', prefix .. id, 'epoch', 'state', 'start', 'hb')
  if v[1] then return v end
  return nil
end
"""

#: KEYS: call hash, index.  ARGV: server hash prefix, media set prefix, role.
#: Returns {current, candidates}: current = {id, epoch, state, start, hb} of the call's
#: live server or {}; candidates = flat {id, epoch, state, start, hb, allocated, ...}.
ALLOCATION_STATE = (
    _LIVE
    + """
local current = {}
local cur = redis.call('HMGET', KEYS[1], 'server', 'epoch')
if cur[1] then
  local v = live(ARGV[1], cur[1])
  if v and v[1] == cur[2] then current = {cur[1], v[1], v[2], v[3], v[4]} end
end
local candidates = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = live(ARGV[1], id)
  if v and cjson.decode(v[2]).role == ARGV[3] then
    local n = redis.call('SCARD', ARGV[2] .. id .. ':' .. v[1] .. ':calls')
    for _, x in ipairs({id, v[1], v[2], v[3], v[4], tostring(n)}) do
      table.insert(candidates, x)
    end
  end
end
return {current, candidates}
"""
)

#: KEYS: call hash.  ARGV: server hash prefix, media set prefix, call id, server id,
#: epoch, allocation ttl ms, excluded server ids (comma-separated: a binding to one of
#: them is replaced even while its heartbeat lasts).
#: Returns {'bound', id, epoch, state, start, hb} or {'gone'} (that run is not live,
#: or is draining).
CLAIM = (
    _LIVE
    + """
local cur = redis.call('HMGET', KEYS[1], 'server', 'epoch')
if cur[1] then
  local excluded = string.find(',' .. (ARGV[7] or '') .. ',', ',' .. cur[1] .. ',', 1, true)
  local v = live(ARGV[1], cur[1])
  if v and v[1] == cur[2] and not excluded then
    return {'bound', cur[1], v[1], v[2], v[3], v[4]}
  end
  redis.call('SREM', ARGV[2] .. cur[1] .. ':' .. cur[2] .. ':calls', ARGV[3])
end
local v = live(ARGV[1], ARGV[4])
if (not v) or v[1] ~= ARGV[5] or cjson.decode(v[2]).draining then return {'gone'} end
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'server', ARGV[4], 'epoch', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ttl)
local set = ARGV[2] .. ARGV[4] .. ':' .. ARGV[5] .. ':calls'
redis.call('SADD', set, ARGV[3])
redis.call('PEXPIRE', set, ttl)
return {'bound', ARGV[4], v[1], v[2], v[3], v[4]}
"""
)

#: KEYS: call hash.  ARGV: media set prefix, call id.  Returns 1 if there was one.
RELEASE = """
local cur = redis.call('HMGET', KEYS[1], 'server', 'epoch')
if not cur[1] then return 0 end
redis.call('SREM', ARGV[1] .. cur[1] .. ':' .. cur[2] .. ':calls', ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

#: KEYS: record by id, record by name.  ARGV: record JSON, name prefix, ttl ms (0: none),
#: '1' for a cached Directory answer (never replaces an assignment).
#: Returns 1 when written, 0 when an assignment was kept.
SET_HOME = """
local cached = ARGV[4] == '1'
local function mine(key)
  local cur = redis.call('GET', key)
  if not cur then return true end
  local rec = cjson.decode(cur)
  if cached and not rec.cached then return false end
  return true
end
local function write(key)
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[3])
  else
    redis.call('SET', key, ARGV[1])
  end
end
if not mine(KEYS[1]) then return 0 end
local old = redis.call('GET', KEYS[1])
local new = cjson.decode(ARGV[1])
if old then
  local rec = cjson.decode(old)
  local old_name = ARGV[2] .. rec.username_key
  if rec.username_key ~= '' and old_name ~= KEYS[2] then
    local other = redis.call('GET', old_name)
    if other and cjson.decode(other).user_id == new.user_id then redis.call('DEL', old_name) end
  end
end
write(KEYS[1])
if new.username_key ~= '' and mine(KEYS[2]) then write(KEYS[2]) end
return 1
"""

#: KEYS: record by id.  ARGV: name prefix.  Returns 1 when there was a record.
CLEAR_HOME = """
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local rec = cjson.decode(old)
if rec.username_key ~= '' then
  local name_key = ARGV[1] .. rec.username_key
  local other = redis.call('GET', name_key)
  if other and cjson.decode(other).user_id == rec.user_id then redis.call('DEL', name_key) end
end
redis.call('DEL', KEYS[1])
return 1
"""
