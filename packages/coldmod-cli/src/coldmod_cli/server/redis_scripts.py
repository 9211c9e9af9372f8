"""The Lua scripts of the Redis store: every write is one script, so it is atomic.

Redis runs a script to the end before any other command, and a script that
fails *before* its first write changes nothing: every script here checks
everything it can refuse first, and only then writes. The ``#!lua`` shebang
(Redis 7) declares the scripts as writing, so Redis refuses them whole with
OOM when ``maxmemory`` is reached under ``noeviction`` — never half applied.

Every key a script touches shares the app's hash tag, so in Redis Cluster
each script runs whole on the node owning that one slot. The app's fixed keys
come in KEYS; a key's history buckets (``…:h:<bucket>:<key>``) and an
instance's version (``…:f:<instance>``) are named inside the script from the
app's prefix — same tag, same slot. Counts are decimal strings end to end
(Lua's numbers are doubles: exact only up to 2**53), added with HINCRBY; the
overflow check splits them in 9-digit halves, which doubles hold exactly.

KEYS of the app scripts, in this order (see ``AppKeys``):
meta, src, since, calls, est, lb, first, last, ver, kv.

Versions: ``ver`` maps a fingerprint to ``id|first_seen|last_seen|keys|label``
(the label last: it may hold ``|``); ``kv`` maps each key of the union to the
comma-joined ids of the versions that have it.

History: one hash per key and 32-day bucket (``bucket = day // 32``, field
``day % 32``, value the calls), small enough to stay listpack-encoded. The
day a key last ran rides in its ``last`` value, ``last_ms:day:calls`` (a
plain ``last_ms`` until it runs with history): a Report writes that value for
every key it counts anyway, so the history costs it no extra command per key;
when a later day comes, the finished day moves to its bucket (one HINCRBY per
key and day). Readers add the buckets and that day. A Report's day is its
window start's; a key's buckets lie between its first and last seen days
(its ``first`` value remembers an earlier day, ``ms:day``, when a window begun
before the key was tracked dated calls before it), so the scripts find them
without scanning. ``meta.pruned_day``: no history day before it is stored.
"""

from __future__ import annotations

__all__ = [
    "DELETE",
    "FETCH_HISTORY",
    "HISTORY",
    "LEASE",
    "REGISTER",
    "RELEASE",
    "REPORT",
    "RESET",
    "RESTORE",
    "RETIRE",
    "TOUCH",
    "UPGRADE",
]

#: The days of one history hash (bucket = day // BUCKET_DAYS).
BUCKET_DAYS = 32

# Shared helpers, prepended to each script. Lua's unpack takes at most ~8000
# values, so multi-field commands go in chunks.
_LIB = r"""
local CHUNK = 4000
local DAY, BUCKET = 86400000, 32
local PREFIX = string.sub(KEYS[1], 1, #KEYS[1] - 4)
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
local function day_of(ms) return math.floor(tonumber(ms) / DAY) end
local function bucket_of(day) return math.floor(day / BUCKET) end
local function hkey(bucket, key) return PREFIX .. 'h:' .. string.format('%d', bucket) .. ':' .. key end
local function pruned_day(K)
  return tonumber(redis.call('HGET', K[1], 'pruned_day') or '0')
end
-- A key's ``last`` value: its last seen ms, then (once it ran with history) the day it last
-- ran and its calls that day so far, "ms:day:calls"; its earlier days are in its buckets.
local function parse_last(v)
  if not v then return nil end
  local ms, day, calls = string.match(v, '^(%d+):(%d+):(%d+)$')
  if ms then return ms, tonumber(day), calls end
  return v, nil, nil
end
-- The history buckets a key may have: from its first seen (or the pruning line) to its last seen.
-- A key's ``first`` value: its first seen ms, then, when a batch whose window began before the
-- key was tracked dated calls earlier, that earliest history day: "ms" or "ms:day".
local function parse_first(v)
  if not v then return nil end
  local ms, day = string.match(v, '^(%d+):(%d+)$')
  if ms then return ms, tonumber(day) end
  return v, nil
end
local function buckets(first, last, floor_day)
  if not first or not last then return 1, 0 end
  local ms, early = parse_first(first)
  local lo = day_of(ms)
  if early and early < lo then lo = early end
  return bucket_of(math.max(lo, floor_day)), bucket_of(day_of((parse_last(last))))
end
local function del_history(K, keys)
  local floor_day = pruned_day(K)
  local firsts, lasts = hmget_all(K[7], keys), hmget_all(K[8], keys)
  for i, key in ipairs(keys) do
    local lo, hi = buckets(firsts[i], lasts[i], floor_day)
    for b = lo, hi do redis.call('DEL', hkey(b, key)) end
  end
end
-- A version's record: id|first_seen|last_seen|keys|label.
local function parse_version(rec)
  local id, first, last, n, label = string.match(rec, '^(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  return {id = id, first = first, last = last, keys = tonumber(n), label = label}
end
local function format_version(v)
  return v.id .. '|' .. v.first .. '|' .. v.last .. '|' .. string.format('%d', v.keys) .. '|' .. v.label
end
local function has_id(list, id)
  return string.find(',' .. list .. ',', ',' .. id .. ',', 1, true) ~= nil
end
-- Keys leave the union: counts, flags, sources, membership and history. Their
-- versions' key counts drop unless `versions_gone` (the versions are being retired).
local function drop_keys(K, keys, versions_gone)
  if #keys == 0 then return end
  if not versions_gone then
    local lost = {}
    for _, list in ipairs(hmget_all(K[10], keys)) do
      if list then
        for id in string.gmatch(list, '[^,]+') do lost[id] = (lost[id] or 0) + 1 end
      end
    end
    local all = redis.call('HGETALL', K[9])
    for i = 1, #all, 2 do
      local v = parse_version(all[i + 1])
      if lost[v.id] then
        v.keys = math.max(0, v.keys - lost[v.id])
        redis.call('HSET', K[9], all[i], format_version(v))
      end
    end
  end
  del_history(K, keys)
  hdel_all(K[2], keys); hdel_all(K[3], keys); hdel_all(K[4], keys)
  hdel_all(K[7], keys); hdel_all(K[8], keys); hdel_all(K[10], keys)
  srem_all(K[5], keys); srem_all(K[6], keys)
end
local function remember_instance(instance, fingerprint, ttl)
  if instance ~= '' then redis.call('SET', PREFIX .. 'f:' .. instance, fingerprint, 'PX', ttl) end
end
local function publish(channel, origin, app, kind, keys)
  if channel ~= '' then
    local message = {o = origin, a = app, k = kind}
    if keys and #keys > 0 then message.keys = keys end
    redis.call('PUBLISH', channel, cjson.encode(message))
  end
end
"""

#: Bring an app written before versions and history (one key set per app) to
#: this layout: its fingerprint becomes its first version, holding every key;
#: counts and timestamps stay as they are; history starts now. Idempotent.
#: ARGV: now_ms, keep_days, fallback fingerprint (for an app stored without one).
#: Returns 1 when it upgraded, 0 when there was nothing to do.
UPGRADE = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local now, keep, fallback = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('EXISTS', K[1]) == 0 or redis.call('HEXISTS', K[1], 'layout') == 1 then return 0 end
local meta = redis.call('HGETALL', K[1])
local m = {}
for i = 1, #meta, 2 do m[meta[i]] = meta[i + 1] end
local fingerprint = m.fingerprint or ''
if fingerprint == '' then fingerprint = fallback end
local keys = redis.call('HKEYS', K[2])
local first = m.registered_ms or now
-- Its last sign of life: the last Register or Report.
local last = m.updated_ms or m.registered_ms or now
if tonumber(m.registered_ms or '0') > tonumber(last) then last = m.registered_ms end
redis.call('DEL', K[9], K[10])
redis.call('HSET', K[9], fingerprint, format_version({id = '1', first = first, last = last, keys = #keys, label = ''}))
local members = {}
for _, key in ipairs(keys) do members[#members + 1] = key; members[#members + 1] = '1' end
hset_pairs(K[10], members)
redis.call('HSET', K[1], 'fingerprint', fingerprint, 'next_version', 1,
  'pruned_day', day_of(now) - keep, 'layout', 2)
return 1
"""
)

#: ARGV: app, now_ms, fingerprint, label, instance, channel, origin, ttl_ms
#: (of the instance's remembered version), keep_days, n, then n ignored keys,
#: then key, source pairs of the version's set (ignored ones already left out).
#: A known fingerprint only refreshes its version (the set is the same by
#: definition); the fingerprint-less version ("") is replaced by each Register of it.
#: Returns {kept, added, removed}: added = keys of the set new to the union,
#: kept = the set's other keys, removed = keys that left the union (ignored, or
#: only the replaced "" set had them).
REGISTER = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local app, now, fingerprint, label, instance = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local channel, origin, ttl, keep, n = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local exists = redis.call('EXISTS', K[1]) == 1
-- Ignored keys leave the union (and every version's set), history included.
local ignored = {}
for i = 11, 10 + n do ignored[#ignored + 1] = ARGV[i] end
local present = hmget_all(K[3], ignored)
local removed = {}
for i, key in ipairs(ignored) do
  if present[i] then removed[#removed + 1] = key end
end
drop_keys(K, removed, false)
local rec = redis.call('HGET', K[9], fingerprint)
if rec and fingerprint ~= '' then
  -- A known version (a fleet restarting): its set is stored; refresh it.
  local v = parse_version(rec)
  if tonumber(now) > tonumber(v.last) then v.last = now end
  if label ~= '' then v.label = label end
  redis.call('HSET', K[9], fingerprint, format_version(v))
  redis.call('HSET', K[1], 'fingerprint', fingerprint, 'registered_ms', now)
  remember_instance(instance, fingerprint, ttl)
  if #removed > 0 then
    redis.call('HSET', K[1], 'updated_ms', now)
    publish(channel, origin, app, 'register')
  end
  return {v.keys, 0, #removed}
end
local keys, pairs_ = {}, {}
for i = 11 + n, #ARGV, 2 do
  keys[#keys + 1] = ARGV[i]
  pairs_[#pairs_ + 1] = ARGV[i]; pairs_[#pairs_ + 1] = ARGV[i + 1]
end
if not exists then
  redis.call('HSET', K[1], 'dropped_unknown', 0, 'dropped_updates', 0, 'next_version', 0,
    'pruned_day', day_of(now) - keep, 'layout', 2)
end
-- A new version; or the fingerprint-less one again, whose set this one replaces.
local old = rec and parse_version(rec)
local id = old and old.id or string.format('%d', redis.call('HINCRBY', K[1], 'next_version', 1))
local lists, tracked = hmget_all(K[10], keys), hmget_all(K[3], keys)
local added, members = {}, {}
for i, key in ipairs(keys) do
  local list = lists[i]
  if not tracked[i] then added[#added + 1] = key; added[#added + 1] = now end  -- new to the union: from now
  if not list then
    members[#members + 1] = key; members[#members + 1] = id
  elseif not has_id(list, id) then
    members[#members + 1] = key; members[#members + 1] = list .. ',' .. id
  end
end
hset_pairs(K[2], pairs_)
hset_pairs(K[3], added)
hset_pairs(K[10], members)
if old then  -- keys its old set had and the new one lacks: it drops them; those only it had leave
  local inset, update, orphaned = {}, {}, {}
  for _, key in ipairs(keys) do inset[key] = true end
  local all = redis.call('HGETALL', K[10])
  for i = 1, #all, 2 do
    local key, list = all[i], all[i + 1]
    if not inset[key] and has_id(list, id) then
      local rest = {}
      for other in string.gmatch(list, '[^,]+') do if other ~= id then rest[#rest + 1] = other end end
      if #rest == 0 then orphaned[#orphaned + 1] = key
      else update[#update + 1] = key; update[#update + 1] = table.concat(rest, ',') end
    end
  end
  hset_pairs(K[10], update)
  drop_keys(K, orphaned, true)
  for _, key in ipairs(orphaned) do removed[#removed + 1] = key end
end
redis.call('HSET', K[9], fingerprint, format_version({id = id, first = old and old.first or now, last = now,
  keys = #keys, label = (label ~= '' or not old) and label or old.label}))
redis.call('HSET', K[1], 'name', app, 'fingerprint', fingerprint, 'registered_ms', now, 'updated_ms', now)
remember_instance(instance, fingerprint, ttl)
publish(channel, origin, app, 'register')
return {#keys - #added / 2, #added / 2, #removed}
"""
)

#: Refresh a known version as a fingerprint-only Register does.
#: ARGV: now_ms, fingerprint, label, instance, ttl_ms. Returns 1 if known, else 0.
TOUCH = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local now, fingerprint, label, instance, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rec = redis.call('HGET', K[9], fingerprint)
if not rec then return 0 end
local v = parse_version(rec)
if tonumber(now) > tonumber(v.last) then v.last = now end
if label ~= '' then v.label = label end
redis.call('HSET', K[9], fingerprint, format_version(v))
redis.call('HSET', K[1], 'fingerprint', fingerprint, 'registered_ms', now)
remember_instance(instance, fingerprint, ttl)
return 1
"""
)

#: Several batches of one app in one script (group commit: a group's deltas
#: are merged per key, so a key hit by many tracers costs one hash update).
#: KEYS: the app's 10 keys, then each batch's instance dedupe hash.
#: ARGV: app, now_ms, keep (recent sequences remembered), ttl_ms, channel,
#: origin, m (batches), then per batch 9 values: sequence, window_start,
#: window_end, dropped_updates, flagged, the keys joined by newlines (keys are
#: printable: none holds one), the calls joined by commas, when flagged
#: is "1" the flags joined by commas ("", "e", "l" or "el": estimated, lower
#: bound), and the sender's fingerprint ("" from older tracers: its instance's
#: registered version). Joined strings instead of 3n arguments: joining is one
#: C call in the collector, where packing each argument costs a Python step.
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
local W = 9  -- values per batch
if redis.call('EXISTS', K[1]) == 0 then return {-1} end

-- Which batches are new: neither recorded nor at or below their instance's floor, nor twice here.
local status, floors, seen_here = {}, {}, {}
for b = 1, m do
  local inst, seq = K[10 + b], ARGV[8 + (b - 1) * W]
  local prior = redis.call('HGET', inst, seq)
  floors[b] = redis.call('HGET', inst, 'floor')
  if prior then status[b] = {1, tonumber(prior)}
  elseif floors[b] and tonumber(seq) <= tonumber(floors[b]) then status[b] = {1, 0}
  elseif seen_here[inst .. '\n' .. seq] then status[b] = {1, -1}  -- its twin's answer, filled in below
  else seen_here[inst .. '\n' .. seq] = b end
end

-- The group's window day, when its new batches share one (the usual case: then a key's
-- calls that day are its merged sum); else multi_day, and each key's days are kept apart.
local group_day, multi_day = nil, false
for b = 1, m do
  if not status[b] then
    local day = day_of(ARGV[8 + (b - 1) * W + 1])
    if group_day == nil then group_day = day elseif day ~= group_day then multi_day = true end
  end
end

-- Merge the new batches per key: one contribution keeps its exact decimal string.
-- hday/hsum (multi_day only): the key's first window day and its calls that day; more days in hmore.
local order, text, sum, parts, first, last, est, lb = {}, {}, {}, {}, {}, {}, {}, {}
local hday, hsum, hmore = {}, {}, {}
local batch_keys = {}
for b = 1, m do
  if not status[b] then
    local base = 8 + (b - 1) * W
    local ws, we, flagged = ARGV[base + 1], ARGV[base + 2], ARGV[base + 4] == '1'
    local wsn, wen = tonumber(ws), tonumber(we)
    local day = day_of(ws)
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
          if multi_day then hday[key] = day; hsum[key] = tonumber(c) end
        else
          parts[key] = parts[key] + 1; sum[key] = sum[key] + tonumber(c)
          if wsn < tonumber(first[key]) then first[key] = ws end
          if wen > tonumber(last[key]) then last[key] = we end
          if not multi_day then
          elseif day == hday[key] then hsum[key] = hsum[key] + tonumber(c)
          else
            local more = hmore[key] or {}
            more[day] = (more[day] or 0) + tonumber(c)
            hmore[key] = more
          end
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

-- Known keys are exactly those with a tracked_since (the union of the live versions, less the
-- ignored); the others are dropped and counted per batch.
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
-- First/last seen: no call is seen before the key was tracked (a batch in flight during a
-- Register). History: each key's calls per window-start day (such a batch's day may precede
-- the key's first seen: its ``first`` value then remembers the earliest day, see parse_first);
-- the day it last ran rides in its ``last`` value, written for every key counted anyway;
-- a finished day moves to its bucket. Exact as the totals are: a merged sum past 2**53
-- was sent back above as -3, and a day's count that would pass it moves to the bucket first.
local function step(key, sday, scount, day, calls)
  if not sday then return day, calls end
  if day == sday then
    local total = tonumber(scount) + tonumber(calls)
    if total < EXACT then return sday, string.format('%.0f', total) end
    redis.call('HINCRBY', hkey(bucket_of(sday), key), sday % BUCKET, scount)
    return sday, calls
  end
  if day > sday then  -- the day it last ran is over: to its bucket
    redis.call('HINCRBY', hkey(bucket_of(sday), key), sday % BUCKET, scount)
    return day, calls
  end
  redis.call('HINCRBY', hkey(bucket_of(day), key), day % BUCKET, calls)  -- a late batch of an earlier day
  return sday, scount
end
local function amount(key, calls) return parts[key] > 1 and string.format('%.0f', calls) or text[key] end
local firsts, lasts = hmget_all(K[7], lkeys), hmget_all(K[8], lkeys)
local set_first, set_last, sets_e, sets_l = {}, {}, {}, {}
local floors, day_text = {}, {}
local group_text = group_day and (':' .. string.format('%d', group_day) .. ':')
for i, key in ipairs(lkeys) do
  local s = tracked[key]
  local sn = tonumber(s)
  local f = tonumber(first[key]) > sn and first[key] or s
  local l = tonumber(last[key]) > sn and last[key] or s
  local floor_day = floors[s]
  if not floor_day then floor_day = day_of(s); floors[s] = floor_day end
  local fv = firsts[i]
  local fms, early = fv, nil
  if fv and string.find(fv, ':', 1, true) then fms, early = parse_first(fv) end
  local min_day = group_day
  if multi_day then
    min_day = hday[key]
    for day in pairs(hmore[key] or {}) do if day < min_day then min_day = day end end
  end
  local new_early = early
  if min_day < floor_day and (not early or min_day < early) then new_early = min_day end
  if not fms or tonumber(f) < tonumber(fms) or new_early ~= early then
    local nf = (fms and tonumber(fms) <= tonumber(f)) and fms or f
    set_first[#set_first + 1] = key
    set_first[#set_first + 1] = new_early and (nf .. ':' .. string.format('%d', new_early)) or nf
  end
  local lv = lasts[i]
  local at = not multi_day and lv and floor_day <= group_day and string.find(lv, group_text, 1, true)
  local total = at and tonumber(string.sub(lv, at + #group_text)) + sum[key]
  if total and total < EXACT then
    -- The usual case: the key ran earlier the same day; add to that day's count.
    local ms = string.sub(lv, 1, at - 1)
    if tonumber(ms) > tonumber(l) then l = ms end
    set_last[#set_last + 1] = key; set_last[#set_last + 1] = l .. group_text .. string.format('%.0f', total)
  else
    local ms, sday, scount = parse_last(lv)
    if ms and tonumber(ms) > tonumber(l) then l = ms end
    if multi_day then
      sday, scount = step(key, sday, scount, hday[key], amount(key, hsum[key]))
      if hmore[key] then
        for day, calls in pairs(hmore[key]) do
          sday, scount = step(key, sday, scount, day, string.format('%.0f', calls))
        end
      end
    else
      sday, scount = step(key, sday, scount, group_day, amount(key, sum[key]))
    end
    local dt = day_text[sday]
    if not dt then dt = ':' .. string.format('%d', sday) .. ':'; day_text[sday] = dt end
    set_last[#set_last + 1] = key; set_last[#set_last + 1] = l .. dt .. scount
  end
  if est[key] then sets_e[#sets_e + 1] = key end
  if lb[key] then sets_l[#sets_l + 1] = key end
end
hset_pairs(K[7], set_first)
hset_pairs(K[8], set_last)
each_chunk(sets_e, function(...) redis.call('SADD', K[5], ...) end)
each_chunk(sets_l, function(...) redis.call('SADD', K[6], ...) end)

-- Per batch: its unknown keys, its id recorded with that outcome; the oldest ids fold into a floor.
-- Its version (the batch's fingerprint, else its instance's) was seen until its window's end.
local dropped_unknown, dropped_updates = 0, 0
local seen_until = {}
for b = 1, m do
  if not status[b] then
    local base = 8 + (b - 1) * W
    local unknown = 0
    for _, key in ipairs(batch_keys[b]) do
      if not tracked[key] and (parts[key] or redis.call('HEXISTS', K[3], key) == 0) then unknown = unknown + 1 end
    end
    status[b] = {0, unknown}
    dropped_unknown = dropped_unknown + unknown
    dropped_updates = dropped_updates + tonumber(ARGV[base + 3])
    local inst, seq = K[10 + b], ARGV[base]
    local fingerprint = ARGV[base + 8]
    if fingerprint == '' then
      local instance = string.sub(inst, #PREFIX + 3)
      fingerprint = redis.call('GET', PREFIX .. 'f:' .. instance) or ''
    end
    if fingerprint ~= '' then
      local until_ = tonumber(ARGV[base + 2])
      if not seen_until[fingerprint] or until_ > seen_until[fingerprint] then seen_until[fingerprint] = until_ end
    end
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
for fingerprint, until_ in pairs(seen_until) do
  local rec = redis.call('HGET', K[9], fingerprint)
  if rec then
    local v = parse_version(rec)
    if until_ > tonumber(v.last) then
      v.last = string.format('%d', until_)
      redis.call('HSET', K[9], fingerprint, format_version(v))
    end
  end
end
for b = 1, m do  -- a twin in this group gets the answer of its first copy
  if status[b][2] == -1 then
    local inst, seq = K[10 + b], ARGV[8 + (b - 1) * W]
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

#: Retire the app's versions last seen before a cutoff (never its most
#: recently seen one: a stopped fleet keeps its heatmap); keys no remaining
#: version has leave (counts, history). Then prune history days before
#: now's day - keep_days (once per day: meta.pruned_day remembers the line).
#: ARGV: app, now_ms, after_ms, keep_days, channel, origin.
#: Returns {removed keys, then fingerprint, record pairs of the retired versions}.
RETIRE = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
local app, now, after, keep, channel, origin = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  ARGV[5], ARGV[6]
if redis.call('EXISTS', K[1]) == 0 then return {0} end
local cutoff = now - after
local out, gone_ids, any = {0}, {}, false
local all = redis.call('HGETALL', K[9])
-- The most recently seen version (ties: the newest) stays, so a stopped fleet keeps its heatmap.
local newest, newest_last, newest_id = nil, -1, -1
for i = 1, #all, 2 do
  local v = parse_version(all[i + 1])
  local last, id = tonumber(v.last), tonumber(v.id)
  if last > newest_last or (last == newest_last and id > newest_id) then
    newest, newest_last, newest_id = all[i], last, id
  end
end
for i = 1, #all, 2 do
  local v = parse_version(all[i + 1])
  if tonumber(v.last) < cutoff and all[i] ~= newest then
    gone_ids[v.id] = true; any = true
    out[#out + 1] = all[i]; out[#out + 1] = all[i + 1]
    redis.call('HDEL', K[9], all[i])
  end
end
local leaving = {}
if any then
  local members = redis.call('HGETALL', K[10])
  local update = {}
  for i = 1, #members, 2 do
    local kept, changed = {}, false
    for id in string.gmatch(members[i + 1], '[^,]+') do
      if gone_ids[id] then changed = true else kept[#kept + 1] = id end
    end
    if #kept == 0 then leaving[#leaving + 1] = members[i]
    elseif changed then update[#update + 1] = members[i]; update[#update + 1] = table.concat(kept, ',') end
  end
  hset_pairs(K[10], update)
  drop_keys(K, leaving, true)
  out[1] = #leaving
end
-- Prune history: whole buckets before the line, and the line's own bucket's older days.
local line = math.floor(now / DAY) - keep
local floor_day = pruned_day(K)
if line > floor_day then
  local keys = redis.call('HKEYS', K[7])
  local firsts, lasts = hmget_all(K[7], keys), hmget_all(K[8], keys)
  local edge = bucket_of(line)
  for i, key in ipairs(keys) do
    local lo, hi = buckets(firsts[i], lasts[i], floor_day)
    local ms, sday = parse_last(lasts[i])
    if sday and sday < line then redis.call('HSET', K[8], key, ms) end
    for b = lo, math.min(hi, edge) do
      if b < edge then redis.call('DEL', hkey(b, key))
      else
        local fields = {}
        for day = math.max(floor_day, b * BUCKET), line - 1 do fields[#fields + 1] = day % BUCKET end
        if #fields > 0 then redis.call('HDEL', hkey(b, key), unpack(fields)) end
      end
    end
  end
  redis.call('HSET', K[1], 'pruned_day', line)
end
if any then
  redis.call('HSET', K[1], 'updated_ms', string.format('%d', now))
  publish(channel, origin, app, 'register')
end
return out
"""
)

#: The history sums of a Fetch, read-only (run inside the Fetch's MULTI, so the
#: same snapshot). ARGV: today (UTC day), quiet_before_ms (entries last seen
#: before it carry their days; -1: none), all (1: every entry carries them).
#: Returns per key with calls in the last 90 days or days to carry: key, the
#: 7/30/90-day sums (or "" when a sum is past 2**53: then the days come too and
#: the collector sums them exactly), and "day:calls,…" (or "").
FETCH_HISTORY = (
    "#!lua flags=no-writes\n"
    + _LIB
    + r"""
local K = KEYS
local today, quiet_before, all = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local floor_day = pruned_day(K)
local keys = redis.call('HKEYS', K[7])
local firsts, lasts = hmget_all(K[7], keys), hmget_all(K[8], keys)
local EXACT = 2 ^ 53
local out = {}
for i, key in ipairs(keys) do
  local ms, sday, scount = parse_last(lasts[i])
  local recent = day_of(ms) >= today - 89
  local carry = all or tonumber(ms) < quiet_before
  if recent or carry then
    local lo, hi = buckets(firsts[i], lasts[i], floor_day)
    if not carry then lo = math.max(lo, bucket_of(today - 89)) end
    local s7, s30, s90, days = 0, 0, 0, {}
    -- One day of the key: into the 7/30/90-day sums, and into the days sent when it carries them.
    local function count(day, calls)
      if day >= today - 89 and day <= today then
        local n = tonumber(calls)
        s90 = s90 + n
        if day >= today - 29 then s30 = s30 + n end
        if day >= today - 6 then s7 = s7 + n end
      end
      if carry then days[#days + 1] = string.format('%d', day) .. ':' .. calls end
    end
    for b = lo, hi do
      local fields = redis.call('HGETALL', hkey(b, key))
      for f = 1, #fields, 2 do count(b * BUCKET + tonumber(fields[f]), fields[f + 1]) end
    end
    if scount then count(sday, scount) end  -- the open day, kept in the key's `last` value
    if s90 >= EXACT and not carry then
      -- Not exact in doubles: send the days, the collector sums them.
      carry = true
      for b = lo, hi do
        local fields = redis.call('HGETALL', hkey(b, key))
        for f = 1, #fields, 2 do
          days[#days + 1] = string.format('%d', b * BUCKET + tonumber(fields[f])) .. ':' .. fields[f + 1]
        end
      end
      if sday then days[#days + 1] = string.format('%d', sday) .. ':' .. scount end
    end
    if s90 > 0 or #days > 0 then
      out[#out + 1] = key
      if s90 >= EXACT then
        out[#out + 1] = ''; out[#out + 1] = ''; out[#out + 1] = ''
      else
        out[#out + 1] = string.format('%.0f', s7)
        out[#out + 1] = string.format('%.0f', s30)
        out[#out + 1] = string.format('%.0f', s90)
      end
      out[#out + 1] = table.concat(days, ',')
    end
  end
end
return out
"""
)

#: The whole history of some keys, read-only. ARGV: the keys.
#: Returns per key of the app: key, "day:calls,…" (possibly empty).
HISTORY = (
    "#!lua flags=no-writes\n"
    + _LIB
    + r"""
local K = KEYS
local floor_day = pruned_day(K)
local keys = {}
for i = 1, #ARGV do keys[i] = ARGV[i] end
local since, firsts, lasts = hmget_all(K[3], keys), hmget_all(K[7], keys), hmget_all(K[8], keys)
local out = {}
for i, key in ipairs(keys) do
  if since[i] then
    local days = {}
    local lo, hi = buckets(firsts[i], lasts[i], floor_day)
    for b = lo, hi do
      local fields = redis.call('HGETALL', hkey(b, key))
      for f = 1, #fields, 2 do
        days[#days + 1] = string.format('%d', b * BUCKET + tonumber(fields[f])) .. ':' .. fields[f + 1]
      end
    end
    local _, sday, scount = parse_last(lasts[i])
    if sday then days[#days + 1] = string.format('%d', sday) .. ':' .. scount end
    out[#out + 1] = key; out[#out + 1] = table.concat(days, ',')
  end
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
del_history(K, redis.call('HKEYS', K[7]))
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
del_history(K, redis.call('HKEYS', K[7]))
redis.call('DEL', K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8], K[9], K[10])
publish(ARGV[2], ARGV[3], ARGV[1], 'delete')
return n
"""
)

#: Make the app exactly a given heatmap (``coldmod store copy``).
#: ARGV: app, fingerprint, registered_ms, updated_ms, dropped_unknown,
#: dropped_updates, channel, origin, pruned_day, v (versions), then per version
#: 4 values: fingerprint, first_seen, last_seen, label, then per key 9 values:
#: key, source, calls, flags, first, last, since, its versions' positions
#: (1-based, comma-joined) and its history "day:calls,…".
RESTORE = (
    "#!lua\n"
    + _LIB
    + r"""
local K = KEYS
del_history(K, redis.call('HKEYS', K[7]))
redis.call('DEL', K[1], K[2], K[3], K[4], K[5], K[6], K[7], K[8], K[9], K[10])
local nv = tonumber(ARGV[10])
redis.call('HSET', K[1], 'name', ARGV[1], 'fingerprint', ARGV[2], 'registered_ms', ARGV[3],
  'updated_ms', ARGV[4], 'dropped_unknown', ARGV[5], 'dropped_updates', ARGV[6],
  'next_version', nv, 'pruned_day', ARGV[9], 'layout', 2)
local counts = {}
local src, since, calls, first, last, est, lb, members = {}, {}, {}, {}, {}, {}, {}, {}
for i = 11 + nv * 4, #ARGV, 9 do
  local key = ARGV[i]
  src[#src + 1] = key; src[#src + 1] = ARGV[i + 1]
  if ARGV[i + 2] ~= '0' then calls[#calls + 1] = key; calls[#calls + 1] = ARGV[i + 2] end
  local flag = ARGV[i + 3]
  if string.find(flag, 'e', 1, true) then est[#est + 1] = key end
  if string.find(flag, 'l', 1, true) then lb[#lb + 1] = key end
  if ARGV[i + 4] ~= '0' then first[#first + 1] = key; first[#first + 1] = ARGV[i + 4] end
  if ARGV[i + 5] ~= '0' then last[#last + 1] = key; last[#last + 1] = ARGV[i + 5] end
  since[#since + 1] = key; since[#since + 1] = ARGV[i + 6]
  if ARGV[i + 7] ~= '' then members[#members + 1] = key; members[#members + 1] = ARGV[i + 7] end
  for id in string.gmatch(ARGV[i + 7], '[^,]+') do counts[id] = (counts[id] or 0) + 1 end
  local bucket, fields = nil, {}
  for day, n in string.gmatch(ARGV[i + 8] .. ',0:0', '(%d+):(%d+)') do  -- days ascend; ',0:0' ends the last
    day = tonumber(day)
    local b = bucket_of(day)
    if b ~= bucket and #fields > 0 then
      redis.call('HSET', hkey(bucket, key), unpack(fields))
      fields = {}
    end
    bucket = b
    fields[#fields + 1] = day % BUCKET; fields[#fields + 1] = n
  end
end
for v = 1, nv do
  local base = 11 + (v - 1) * 4
  local id = string.format('%d', v)
  redis.call('HSET', K[9], ARGV[base], format_version({id = id, first = ARGV[base + 1], last = ARGV[base + 2],
    keys = counts[id] or 0, label = ARGV[base + 3]}))
end
hset_pairs(K[2], src); hset_pairs(K[3], since); hset_pairs(K[4], calls)
hset_pairs(K[7], first); hset_pairs(K[8], last); hset_pairs(K[10], members)
each_chunk(est, function(...) redis.call('SADD', K[5], ...) end)
each_chunk(lb, function(...) redis.call('SADD', K[6], ...) end)
publish(ARGV[7], ARGV[8], ARGV[1], 'register')
return #src / 2
"""
)

#: The one-sender-per-set lease of a version (see ``Store.lease``), judged on the
#: collectors' clock (``now_ms``), not Redis's: the key's own expiry only
#: collects leases nobody released. KEYS: the lease. ARGV: holder, now_ms,
#: lease_ms, keep_ms. Value: ``expires_ms:holder``. Returns 1 when taken.
LEASE = r"""#!lua
local holder, now, lease, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local held = redis.call('GET', KEYS[1])
if held then
  local expires, who = string.match(held, '^(%d+):(.*)$')
  if who ~= holder and tonumber(expires) > now then return 0 end
end
redis.call('SET', KEYS[1], string.format('%d', now + lease) .. ':' .. holder, 'PX', keep)
return 1
"""

#: Give a lease back. KEYS: the lease. ARGV: holder ("" whoever holds it). Returns 1 if released.
RELEASE = r"""#!lua
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local _, who = string.match(held, '^(%d+):(.*)$')
if ARGV[1] ~= '' and who ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
