"""The Lua scripts of the Redis store: every write is one script, so it is atomic.

Redis runs a script to the end before any other command, and a script that
fails *before* its first write changes nothing: every script here checks
everything it can refuse first, and only then writes. The ``#!lua`` shebang
(Redis 7) declares the scripts as writing, so Redis refuses them whole with
OOM when ``maxmemory`` is reached under ``noeviction`` — never half applied.

Every key a script touches is passed in KEYS and shares the app's hash tag,
so in Redis Cluster each script runs on one slot. Counts are decimal strings
end to end (Lua's numbers are doubles: exact only up to 2**53), added with
HINCRBY; the overflow check splits them in 9-digit halves, which doubles
hold exactly.

KEYS of the app scripts, in this order (see ``AppKeys``):
meta, src, since, calls, est, lb, first, last.
"""

from __future__ import annotations

__all__ = ["DELETE", "REGISTER", "REPORT", "RESET", "RESTORE"]

# Shared helpers, prepended to each script. Lua's unpack takes at most ~8000
# values, so multi-field commands go in chunks.
_LIB = r"""
local CHUNK = 4000
local function each_chunk(list, fn)
  for i = 1, #list, CHUNK do
    fn(unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
end
local function hdel_all(key, fields)
  each_chunk(fields, function(...) redis.call('HDEL', key, ...) end)
end
local function srem_all(key, fields)
  each_chunk(fields, function(...) redis.call('SREM', key, ...) end)
end
local function hmget_all(key, fields)
  local out = {}
  each_chunk(fields, function(...)
    for _, v in ipairs(redis.call('HMGET', key, ...)) do out[#out + 1] = v end
  end)
  return out
end
local function hset_pairs(key, pairs_)
  each_chunk(pairs_, function(...) redis.call('HSET', key, ...) end)
end
local function drop_app_fields(K, fields)
  hdel_all(K[2], fields); hdel_all(K[3], fields); hdel_all(K[4], fields)
  hdel_all(K[7], fields); hdel_all(K[8], fields)
  srem_all(K[5], fields); srem_all(K[6], fields)
end
local function publish(channel, origin, app, kind, keys)
  if channel ~= '' then
    local message = {o = origin, a = app, k = kind}
    if keys and #keys > 0 then message.keys = keys end
    redis.call('PUBLISH', channel, cjson.encode(message))
  end
end
"""

#: ARGV: app, now_ms, fingerprint, channel, origin, then key, source pairs.
#: Returns {kept, added, removed}.
REGISTER = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local app, now, fingerprint, channel, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local exists = redis.call('EXISTS', K[1]) == 1
if exists and fingerprint ~= '' and redis.call('HGET', K[1], 'fingerprint') == fingerprint then
  -- A fleet restarting registers the same set again and again: nothing to change.
  redis.call('HSET', K[1], 'registered_ms', now)
  return {redis.call('HLEN', K[2]), 0, 0}
end
local new, pairs_ = {}, {}
for i = 6, #ARGV, 2 do
  new[ARGV[i]] = true
  pairs_[#pairs_ + 1] = ARGV[i]; pairs_[#pairs_ + 1] = ARGV[i + 1]
end
local old, removed, added = {}, {}, {}
for _, key in ipairs(redis.call('HKEYS', K[2])) do
  old[key] = true
  if not new[key] then removed[#removed + 1] = key end
end
for i = 1, #pairs_, 2 do
  local key = pairs_[i]
  if not old[key] then added[#added + 1] = key; added[#added + 1] = now end
end
drop_app_fields(K, removed)
hset_pairs(K[2], pairs_)
hset_pairs(K[3], added)  -- new keys are tracked from now
redis.call('HSET', K[1], 'name', app, 'fingerprint', fingerprint, 'registered_ms', now, 'updated_ms', now)
if not exists then
  redis.call('HSET', K[1], 'dropped_unknown', 0, 'dropped_updates', 0)
end
publish(channel, origin, app, 'register')
local kept = #pairs_ / 2 - #added / 2
return {kept, #added / 2, #removed}
"""
)

#: KEYS: the app's 8 keys, then the instance's dedupe hash.
#: ARGV: app, sequence, window_start, window_end, dropped_updates, now_ms,
#: keep (recent sequences remembered), ttl_ms, channel, origin, n, flagged,
#: then the n keys joined by newlines (keys are printable: none holds one),
#: the n calls joined by commas and, when ``flagged`` is "1", the n flags
#: joined by commas ("", "e", "l" or "el": estimated, lower bound). Three
#: strings instead of 3n arguments: joining is one C call in the collector,
#: where packing each argument costs a Python step.
#: Returns {status, unknown, unknown keys...}: status 0 applied, 1 duplicate,
#: -1 unknown app, -2 a count would overflow (then the rest is the key).
REPORT = (
    "#!lua\n"
    + _LIB
    + r"""
local K, inst = KEYS, KEYS[9]
local app, seq, wstart, wend = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local dropped_updates, now, keep, ttl = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local channel, origin, n, flagged = ARGV[9], ARGV[10], tonumber(ARGV[11]), ARGV[12] == '1'
local prior = redis.call('HGET', inst, seq)
if prior then return {1, tonumber(prior)} end
local floor = redis.call('HGET', inst, 'floor')
if floor and tonumber(seq) <= tonumber(floor) then return {1, 0} end
if redis.call('EXISTS', K[1]) == 0 then return {-1, 0} end

local keys, calls, flags = {}, {}, {}
for key in string.gmatch(ARGV[13], '[^\n]+') do keys[#keys + 1] = key end
for count in string.gmatch(ARGV[14], '[^,]+') do calls[#calls + 1] = count end
if flagged then
  for i = 1, n do flags[i] = '' end
  local i = 1
  for flag in string.gmatch(ARGV[15] .. ',', '([^,]*),') do flags[i] = flag; i = i + 1 end
end
if #keys ~= n or #calls ~= n then return redis.error_reply('ERR a malformed batch') end
-- Known keys are exactly those with a tracked_since; the others are dropped and counted.
local since = hmget_all(K[3], keys)
local live, lkeys, unknown = {}, {}, {}
for i = 1, n do
  if not since[i] then unknown[#unknown + 1] = keys[i]
  elseif calls[i] ~= '0' then live[#live + 1] = i; lkeys[#lkeys + 1] = keys[i] end
end
local current = hmget_all(K[4], lkeys)
-- Sums below 2**53 are exact in Lua's doubles and are written in one HSET; the rare
-- larger one is added by HINCRBY (exact in Redis), after the whole batch was checked
-- for overflow in 9-digit halves: a batch that would pass 2**63 - 1 is refused whole.
local EXACT, BASE, MAX_HI, MAX_LO = 2 ^ 53, 1e9, 9223372036, 854775807
local function halves(text)
  if #text <= 9 then return 0, tonumber(text) end
  return tonumber(string.sub(text, 1, #text - 9)), tonumber(string.sub(text, -9))
end
local sums, big = {}, {}
for j, i in ipairs(live) do
  local delta, have = calls[i], current[j] or '0'
  local sum = tonumber(have) + tonumber(delta)
  if sum < EXACT then
    sums[#sums + 1] = lkeys[j]; sums[#sums + 1] = string.format('%.0f', sum)
  else
    if sum > 9e18 then
      local ah, al = halves(have)
      local bh, bl = halves(delta)
      local lo = al + bl
      local hi = ah + bh + math.floor(lo / BASE)
      lo = lo % BASE
      if hi > MAX_HI or (hi == MAX_HI and lo > MAX_LO) then return {-2, 0, lkeys[j]} end
    end
    big[#big + 1] = j
  end
end
hset_pairs(K[4], sums)
for _, j in ipairs(big) do redis.call('HINCRBY', K[4], lkeys[j], calls[live[j]]) end

-- No call is seen before the key was tracked (the batch was in flight during a Register).
local firsts, lasts = hmget_all(K[7], lkeys), hmget_all(K[8], lkeys)
local set_first, set_last, est, lb = {}, {}, {}, {}
local ws, we = tonumber(wstart), tonumber(wend)
for j, i in ipairs(live) do
  local key, s = lkeys[j], since[i]
  local sn = tonumber(s)
  local f = ws > sn and wstart or s
  local l = we > sn and wend or s
  if not firsts[j] or tonumber(f) < tonumber(firsts[j]) then
    set_first[#set_first + 1] = key; set_first[#set_first + 1] = f
  end
  if not lasts[j] or tonumber(l) > tonumber(lasts[j]) then
    set_last[#set_last + 1] = key; set_last[#set_last + 1] = l
  end
  if flagged then
    local flag = flags[i]
    if string.find(flag, 'e', 1, true) then est[#est + 1] = key end
    if string.find(flag, 'l', 1, true) then lb[#lb + 1] = key end
  end
end
hset_pairs(K[7], set_first)
hset_pairs(K[8], set_last)
each_chunk(est, function(...) redis.call('SADD', K[5], ...) end)
each_chunk(lb, function(...) redis.call('SADD', K[6], ...) end)
redis.call('HINCRBY', K[1], 'dropped_unknown', #unknown)
redis.call('HINCRBY', K[1], 'dropped_updates', dropped_updates)
if tonumber(redis.call('HGET', K[1], 'updated_ms') or '0') < tonumber(now) then
  redis.call('HSET', K[1], 'updated_ms', now)
end

-- The batch id, with the outcome it got; the oldest ids fold into a floor.
redis.call('HSET', inst, seq, #unknown)
if redis.call('HLEN', inst) > keep + 1 then
  local seqs = {}
  for _, field in ipairs(redis.call('HKEYS', inst)) do
    if field ~= 'floor' then seqs[#seqs + 1] = tonumber(field) end
  end
  table.sort(seqs)
  local top = floor and tonumber(floor) or 0
  local drop = {}
  for i = 1, #seqs - keep do
    drop[#drop + 1] = string.format('%d', seqs[i])
    if seqs[i] > top then top = seqs[i] end
  end
  hdel_all(inst, drop)
  redis.call('HSET', inst, 'floor', string.format('%d', top))
end
redis.call('PEXPIRE', inst, ttl)
-- Other collectors hear only which app changed (their pages fetch it again): a
-- message of a few bytes, not the batch's keys.
if #lkeys > 0 then publish(channel, origin, app, 'report') end
local out = {0, #unknown}
for _, key in ipairs(unknown) do out[#out + 1] = key end
return out
"""
)

#: ARGV: app, now_ms, channel, origin. Returns the number of keys, or -1 for an unknown app.
RESET = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local app, now, channel, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', K[1]) == 0 then return -1 end
redis.call('DEL', K[4], K[5], K[6], K[7], K[8])
local keys = redis.call('HKEYS', K[2])
local since = {}
for _, key in ipairs(keys) do since[#since + 1] = key; since[#since + 1] = now end
hset_pairs(K[3], since)
redis.call('HSET', K[1], 'dropped_unknown', 0, 'dropped_updates', 0, 'updated_ms', now)
publish(channel, origin, app, 'reset')
return #keys
"""
)

#: ARGV: app, channel, origin. Returns the number of keys, or -1 for an unknown app.
DELETE = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
if redis.call('EXISTS', K[1]) == 0 then return -1 end
local n = redis.call('HLEN', K[2])
redis.call('DEL', K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8])
publish(ARGV[2], ARGV[3], ARGV[1], 'delete')
return n
"""
)

#: Make the app exactly a given heatmap (``coldmod store copy``).
#: ARGV: app, fingerprint, registered_ms, updated_ms, dropped_unknown,
#: dropped_updates, channel, origin, then per key 8 values: key, source,
#: calls, flags, first, last, since. (7 values; see RedisStore.restore.)
RESTORE = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
redis.call('DEL', K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8])
redis.call('HSET', K[1], 'name', ARGV[1], 'fingerprint', ARGV[2], 'registered_ms', ARGV[3],
  'updated_ms', ARGV[4], 'dropped_unknown', ARGV[5], 'dropped_updates', ARGV[6])
local src, since, calls, first, last, est, lb = {}, {}, {}, {}, {}, {}, {}
for i = 9, #ARGV, 7 do
  local key = ARGV[i]
  src[#src + 1] = key; src[#src + 1] = ARGV[i + 1]
  if ARGV[i + 2] ~= '0' then calls[#calls + 1] = key; calls[#calls + 1] = ARGV[i + 2] end
  local flag = ARGV[i + 3]
  if string.find(flag, 'e', 1, true) then est[#est + 1] = key end
  if string.find(flag, 'l', 1, true) then lb[#lb + 1] = key end
  if ARGV[i + 4] ~= '0' then first[#first + 1] = key; first[#first + 1] = ARGV[i + 4] end
  if ARGV[i + 5] ~= '0' then last[#last + 1] = key; last[#last + 1] = ARGV[i + 5] end
  since[#since + 1] = key; since[#since + 1] = ARGV[i + 6]
end
hset_pairs(K[2], src); hset_pairs(K[3], since); hset_pairs(K[4], calls)
hset_pairs(K[7], first); hset_pairs(K[8], last)
each_chunk(est, function(...) redis.call('SADD', K[5], ...) end)
each_chunk(lb, function(...) redis.call('SADD', K[6], ...) end)
publish(ARGV[7], ARGV[8], ARGV[1], 'register')
return #src / 2
"""
)
