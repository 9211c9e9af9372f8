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

#: Several batches of one app in one script (group commit: a group's deltas
#: are merged per key, so a key hit by many tracers costs one hash update).
#: KEYS: the app's 8 keys, then each batch's instance dedupe hash.
#: ARGV: app, now_ms, keep (recent sequences remembered), ttl_ms, channel,
#: origin, m (batches), then per batch 8 values: sequence, window_start,
#: window_end, dropped_updates, flagged, the keys joined by newlines (keys are
#: printable: none holds one), the calls joined by commas and, when flagged
#: is "1", the flags joined by commas ("", "e", "l" or "el": estimated, lower
#: bound). Joined strings instead of 3n arguments: joining is one C call in
#: the collector, where packing each argument costs a Python step.
#: Returns {code, then per batch: status, unknown}: code 0 written (status 0
#: applied, 1 duplicate), -1 unknown app, -2 a count would pass 2**63 - 1
#: (then the key), -3 the group's merged sums are not exact in Lua's doubles
#: (past 2**53 from several batches: apply them one by one). -2 and -3 write nothing.
REPORT = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local app, now, keep, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local channel, origin, m = ARGV[5], ARGV[6], tonumber(ARGV[7])
if redis.call('EXISTS', K[1]) == 0 then return {-1} end

-- Which batches are new: neither recorded nor at or below their instance's floor, nor twice here.
local status, floors, seen_here = {}, {}, {}
for b = 1, m do
  local inst, seq = K[8 + b], ARGV[8 + (b - 1) * 8]
  local prior = redis.call('HGET', inst, seq)
  floors[b] = redis.call('HGET', inst, 'floor')
  if prior then status[b] = {1, tonumber(prior)}
  elseif floors[b] and tonumber(seq) <= tonumber(floors[b]) then status[b] = {1, 0}
  elseif seen_here[inst .. '\n' .. seq] then status[b] = {1, -1}  -- its twin's answer, filled in below
  else seen_here[inst .. '\n' .. seq] = b end
end

-- Merge the new batches per key: one contribution keeps its exact decimal string.
local order, text, sum, parts, first, last, est, lb = {}, {}, {}, {}, {}, {}, {}, {}
local batch_keys = {}
for b = 1, m do
  if not status[b] then
    local base = 8 + (b - 1) * 8
    local ws, we, flagged = ARGV[base + 1], ARGV[base + 2], ARGV[base + 4] == '1'
    local wsn, wen = tonumber(ws), tonumber(we)
    local keys, calls, flags = {}, {}, {}
    for key in string.gmatch(ARGV[base + 5], '[^\n]+') do keys[#keys + 1] = key end
    for count in string.gmatch(ARGV[base + 6], '[^,]+') do calls[#calls + 1] = count end
    if flagged then
      local i = 1
      for flag in string.gmatch(ARGV[base + 7] .. ',', '([^,]*),') do flags[i] = flag; i = i + 1 end
    end
    if #keys ~= #calls then return redis.error_reply('ERR a malformed batch') end
    batch_keys[b] = keys
    for i, key in ipairs(keys) do
      local c = calls[i]
      if c ~= '0' then
        if not parts[key] then
          order[#order + 1] = key; parts[key] = 1; text[key] = c; sum[key] = tonumber(c)
          first[key] = ws; last[key] = we
        else
          parts[key] = parts[key] + 1; sum[key] = sum[key] + tonumber(c)
          if wsn < tonumber(first[key]) then first[key] = ws end
          if wen > tonumber(last[key]) then last[key] = we end
        end
        local flag = flags[i]
        if flag and flag ~= '' then
          if string.find(flag, 'e', 1, true) then est[key] = true end
          if string.find(flag, 'l', 1, true) then lb[key] = true end
        end
      end
    end
  end
end

-- Known keys are exactly those with a tracked_since; the others are dropped and counted per batch.
local since = hmget_all(K[3], order)
local live, tracked = {}, {}
for j, key in ipairs(order) do
  if since[j] then live[#live + 1] = j; tracked[key] = since[j] end
end
local lkeys = {}
for i, j in ipairs(live) do lkeys[i] = order[j] end
local current = hmget_all(K[4], lkeys)
-- Sums below 2**53 are exact in doubles and go in one HSET; a larger one is
-- added with HINCRBY from its exact string (one contribution) after the whole
-- group was checked for overflow in 9-digit halves: nothing is written if any
-- count would pass 2**63 - 1.
local EXACT, BASE, MAX_HI, MAX_LO = 2 ^ 53, 1e9, 9223372036, 854775807
local function halves(digits)
  if #digits <= 9 then return 0, tonumber(digits) end
  return tonumber(string.sub(digits, 1, #digits - 9)), tonumber(string.sub(digits, -9))
end
local sums, big = {}, {}
for i, key in ipairs(lkeys) do
  local have = current[i] or '0'
  local total = tonumber(have) + sum[key]
  if total < EXACT then
    sums[#sums + 1] = key; sums[#sums + 1] = string.format('%.0f', total)
  else
    if parts[key] > 1 and sum[key] >= EXACT then return {-3} end
    if total > 9e18 then
      local ah, al = halves(have)
      local bh, bl = halves(text[key])
      local lo = al + bl
      local hi = ah + bh + math.floor(lo / BASE)
      lo = lo % BASE
      if hi > MAX_HI or (hi == MAX_HI and lo > MAX_LO) then return {-2, key} end
    end
    big[#big + 1] = key
  end
end

-- Every check passed: write.
hset_pairs(K[4], sums)
for _, key in ipairs(big) do
  redis.call('HINCRBY', K[4], key, parts[key] > 1 and string.format('%.0f', sum[key]) or text[key])
end
-- No call is seen before the key was tracked (the batch was in flight during a Register).
local firsts, lasts = hmget_all(K[7], lkeys), hmget_all(K[8], lkeys)
local set_first, set_last, sets_e, sets_l = {}, {}, {}, {}
for i, key in ipairs(lkeys) do
  local s = tracked[key]
  local sn = tonumber(s)
  local f = tonumber(first[key]) > sn and first[key] or s
  local l = tonumber(last[key]) > sn and last[key] or s
  if not firsts[i] or tonumber(f) < tonumber(firsts[i]) then
    set_first[#set_first + 1] = key; set_first[#set_first + 1] = f
  end
  if not lasts[i] or tonumber(l) > tonumber(lasts[i]) then
    set_last[#set_last + 1] = key; set_last[#set_last + 1] = l
  end
  if est[key] then sets_e[#sets_e + 1] = key end
  if lb[key] then sets_l[#sets_l + 1] = key end
end
hset_pairs(K[7], set_first)
hset_pairs(K[8], set_last)
each_chunk(sets_e, function(...) redis.call('SADD', K[5], ...) end)
each_chunk(sets_l, function(...) redis.call('SADD', K[6], ...) end)

-- Per batch: its unknown keys, its id recorded with that outcome; the oldest ids fold into a floor.
local dropped_unknown, dropped_updates = 0, 0
for b = 1, m do
  if not status[b] then
    local unknown = 0
    for _, key in ipairs(batch_keys[b]) do
      if not tracked[key] and (parts[key] or redis.call('HEXISTS', K[3], key) == 0) then unknown = unknown + 1 end
    end
    status[b] = {0, unknown}
    dropped_unknown = dropped_unknown + unknown
    dropped_updates = dropped_updates + tonumber(ARGV[8 + (b - 1) * 8 + 3])
    local inst, seq = K[8 + b], ARGV[8 + (b - 1) * 8]
    redis.call('HSET', inst, seq, unknown)
    if redis.call('HLEN', inst) > keep + 1 then
      local seqs = {}
      for _, field in ipairs(redis.call('HKEYS', inst)) do
        if field ~= 'floor' then seqs[#seqs + 1] = tonumber(field) end
      end
      table.sort(seqs)
      local top = floors[b] and tonumber(floors[b]) or 0
      local drop = {}
      for i = 1, #seqs - keep do
        drop[#drop + 1] = string.format('%d', seqs[i])
        if seqs[i] > top then top = seqs[i] end
      end
      hdel_all(inst, drop)
      redis.call('HSET', inst, 'floor', string.format('%d', top))
    end
    redis.call('PEXPIRE', inst, ttl)
  end
end
for b = 1, m do  -- a twin in this group gets the answer of its first copy
  if status[b][2] == -1 then
    local inst, seq = K[8 + b], ARGV[8 + (b - 1) * 8]
    status[b] = {1, status[seen_here[inst .. '\n' .. seq]][2]}
  end
end
redis.call('HINCRBY', K[1], 'dropped_unknown', dropped_unknown)
redis.call('HINCRBY', K[1], 'dropped_updates', dropped_updates)
if tonumber(redis.call('HGET', K[1], 'updated_ms') or '0') < tonumber(now) then
  redis.call('HSET', K[1], 'updated_ms', now)
end
-- Other collectors hear only which app changed (their pages fetch it again).
if #lkeys > 0 then publish(channel, origin, app, 'report') end
local out = {0}
for b = 1, m do out[#out + 1] = status[b][1]; out[#out + 1] = status[b][2] end
for _, key in ipairs(order) do  -- then the merged keys that were dropped (for the changed-keys notice)
  if not tracked[key] then out[#out + 1] = key end
end
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
