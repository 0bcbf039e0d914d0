-- Shared prelude of every rotating-llm limiter script.
--
-- The names in capitals that are not set here (ACQUIRE_EST, HEAD_WINDOW_US, STATUS_WIDTH,
-- ...) are argument and reply positions from rotating_llm.limiter._schema, whose
-- generated header is loaded in front of this file. Every pool script is called as:
--   KEYS[1] = <prefix>v3:{<pool>}:avail   zset key_id -> earliest instant it may admit
--   KEYS[2] = <prefix>v3:{<pool>}:cfg     hash key_id -> "rpm tpm rpd tpd weight group[ tier]"
--   ARGV[HEAD_*]                          window (us), four daily reset instants (us)
-- Other keys are derived from KEYS[1] by replacing the trailing "avail", so they share
-- the pool's hash tag and the script stays on one cluster slot:
--   avail:<tier>   zset like avail, of the keys of that tier (> 0; tier 0 is in avail)
--   aff:<digest>   string: the key id that last served an affinity (acquire.lua)
--   use            hash key_id -> "cnt day n dt old seq|<limits>", key_id..':s' -> tokens held
--   rpm:<kid>      zset "<reservation id>:<tokens>" -> instant it counts from
--   cooldown:<kid>, backoff:<kid>, disabled (hash key_id -> reason)
--   req:<request id>  string: an acquire's grant, kept REQ_TTL_MS (see acquire.lua)
--   groups         hash @<group> -> its limits "rpm tpm rpd tpd 0 -" (0: none),
--                  @<group>:k -> its member key ids "k1,k2"
-- A quota group is counted like a key under the name @<group> (GROUP_MARK; a key id
-- never starts with it): its summary and token count in use (and @<group>:b, set while
-- members wait because of it), its reservations in rpm:@<group> as
-- "<reservation id>@<key id>:<tokens>". A key's limits name its group ('-': none).
--
-- Times are microseconds on Redis's clock (TIME); client clocks never decide. Every
-- number formatted here is bounded: instants, limits and token counts (validated by
-- the client, at most 10**12 each) and counts of members actually held.
--
-- This runs on the decision's hot path: each redis.call, each element of its reply and
-- each table or formatted number costs about a microsecond here. So a key's counters are
-- read for all candidates with one HMGET, its reservations are trimmed only when a
-- decision needs it (or they are more than a window past due, which bounds memory), and
-- a completion touches only the token count.
--
-- cnt and sum count every member held in rpm:<kid>, including members already out of
-- the window but not trimmed yet; a decision on such counts is still exact, because the
-- members out of the window are the oldest, so the member that decides when a limit
-- frees up is the same either way (see fit_time).

-- The same code serves as a prelude of EVAL scripts and as a function library (FCALL,
-- Redis 7+): per-call state lives in the locals below and is set by begin().
local KEYS, ARGV, AVAIL, CFG, BASE, K_USE, K_DISABLED, K_GROUPS, WINDOW
local NOW, NOW_S, CUTOFF, CUTOFF_S, STALE
local DAY_S, NEXT_RESET
local INF = 1 / 0
-- A day's token count stops here (above every limit, exact in a double), however many
-- requests a key without a daily token limit serves.
local DT_MAX = 1e15
local unpack  -- Lua 5.1 (Redis) and 5.4 (embedded store)
local LIMITS, N_LIMITS = {}, 0  -- parsed config strings (kept between calls of a library)
-- Tables reused between calls of a library (a call never nests): a table costs more to
-- make and collect than to refill. In an EVAL script they are made anew with each call.
local UPOOL, FIELDS, WRITES, F_KID, F_LIM, F_U = {}, {}, {}, {}, {}, {}
local SKEY, N_SKEY = {}, 0  -- key_id -> key_id .. ':s' (its token count's field)
-- rpm:<kid> is kept 2-3 days past use: its expiry is renewed by the first reservation
-- of each day and set whenever it is made anew.
local KEY_TTL_S = '259200'
-- An acquire's grant is kept this long under req:<request id> (milliseconds): longer
-- than a resend takes (socket timeout 5 s, then redis-py's retries), short on memory.
local REQ_TTL_MS = '30000'

-- What a library keeps between calls to spare work (one table: a chunk may hold 200
-- locals). A tonumber of a string costs two strtod calls here, a table lookup much less;
-- so the numbers that repeat between calls (the window, day instants, a TIME's seconds)
-- are looked up (MEMO.num: at most 64 kept), and a summary this library wrote is not
-- parsed again when read back (MEMO.parsed: summary string -> its fields, at most
-- MEMO.MAX kept). MEMO.avail: the pool of the last call (its key names are made once).
local MEMO = {nums = {}, n_nums = 0, parsed = {}, n_parsed = 0, MAX = 4096, avail = nil}
function MEMO.num(s)
  local v = MEMO.nums[s]
  if v then return v end
  v = tonumber(s)
  if MEMO.n_nums >= 64 then MEMO.nums, MEMO.n_nums = {}, 0 end
  if v then MEMO.nums[s], MEMO.n_nums = v, MEMO.n_nums + 1 end
  return v
end

local function begin(keys, args)
  if not unpack then unpack = table.unpack or _G.unpack end
  KEYS, ARGV = keys, args
  CFG = keys[2]
  if keys[1] ~= MEMO.avail then
    AVAIL, MEMO.avail = keys[1], keys[1]
    BASE = string.sub(AVAIL, 1, #AVAIL - 5)
    K_USE, K_DISABLED, K_GROUPS = BASE .. 'use', BASE .. 'disabled', BASE .. 'groups'
  end
  WINDOW = MEMO.num(args[HEAD_WINDOW_US])
  local t = redis.call('TIME')
  NOW = MEMO.num(t[1]) * 1000000 + tonumber(t[2])
  NOW_S = t[1] .. string.sub('00000' .. t[2], -6)  -- (string.format costs more)
  CUTOFF = NOW - WINDOW
  STALE = CUTOFF - WINDOW
  CUTOFF_S, DAY_S = nil, nil
end

-- Today's start as passed (DAY_S, a string stored as is) and the next reset after now
-- (NEXT_RESET, INF if none), by Redis's clock.
local function days()
  local d1, d2 = MEMO.num(ARGV[HEAD_DAY_1]), MEMO.num(ARGV[HEAD_DAY_2])
  if d1 <= NOW and NOW < d2 then  -- the usual case: the client's today is Redis's
    DAY_S, NEXT_RESET = ARGV[HEAD_DAY_1], d2
    return
  end
  DAY_S, NEXT_RESET = '0', INF
  for i = HEAD_DAY_0, HEAD_DAY_3 do
    local v = MEMO.num(ARGV[i])
    if v <= NOW then DAY_S = ARGV[i] elseif v < NEXT_RESET then NEXT_RESET = v end
  end
end

-- An integer as a string (exact: a format costs less than tostring, which is exact only
-- below 1e14).
local function int_s(x) return string.format('%d', x) end

local function k_rpm(kid) return BASE .. 'rpm:' .. kid end
local function k_cool(kid) return BASE .. 'cooldown:' .. kid end
local function k_backoff(kid) return BASE .. 'backoff:' .. kid end

-- Limits from a config string "rpm tpm rpd tpd weight group[ tier]" (0: no such limit;
-- group '-': none; no tier: 0); nil if the key is not in the pool. The returned table is
-- shared: never change it.
local function parse_limits(c)
  if not c then return nil end
  local lim = LIMITS[c]
  if lim then return lim end
  local a, b, d, t, w, g, r = string.match(c, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) ?(%d*)$')
  if not (tonumber(a) and tonumber(b) and tonumber(d) and tonumber(t) and tonumber(w)) then
    return nil  -- not a config string (the client checks what it registers)
  end
  lim = {rpm = tonumber(a), tpm = tonumber(b), rpd = tonumber(d), tpd = tonumber(t),
         weight = tonumber(w), tier = tonumber(r) or 0}
  if lim.rpm <= 0 then lim.rpm = INF end
  if lim.tpm <= 0 then lim.tpm = INF end
  if g ~= '-' then lim.group = g end
  if N_LIMITS >= 4096 then LIMITS, N_LIMITS = {}, 0 end
  LIMITS[c], N_LIMITS = lim, N_LIMITS + 1
  return lim
end

local function limits(kid) return parse_limits(redis.call('HGET', CFG, kid)) end

-- The ids of the pool's keys: the fields of its config but TIERS_FIELD.
local function key_ids()
  local out = {}
  for _, f in ipairs(redis.call('HKEYS', CFG)) do
    if f ~= TIERS_FIELD then out[#out + 1] = f end
  end
  return out
end

-- The availability set of a key of limits `lim`: AVAIL for tier 0 (or no limits).
local function k_avail(lim)
  if lim and lim.tier > 0 then return BASE .. 'avail:' .. int_s(lim.tier) end
  return AVAIL
end

-- The availability sets of the tiers listed in `s` ("0,2", ascending; '' or nil: only
-- tier 0), lowest tier first.
local function tier_sets(s)
  if not s or s == '' then return {AVAIL} end
  local out = {}
  for t in string.gmatch(s, '%d+') do out[#out + 1] = t == '0' and AVAIL or BASE .. 'avail:' .. t end
  return out
end

-- A key's score in its availability set and that set (nil, nil: in none).
local function avail_score(kid)
  local sc = redis.call('ZSCORE', AVAIL, kid)
  if sc then return tonumber(sc), AVAIL end
  local lim = limits(kid)
  if lim and lim.tier > 0 then
    local set = k_avail(lim)
    sc = redis.call('ZSCORE', set, kid)
    if sc then return tonumber(sc), set end
  end
  return nil, nil
end

-- Take a key (of limits `lim`, if known) out of every availability set it may be in.
local function unlist(kid, lim)
  redis.call('ZREM', AVAIL, kid)
  if lim and lim.tier > 0 then redis.call('ZREM', k_avail(lim), kid) end
end

-- A key's usage from its summary "cnt day n dt old seq|limits" and token count:
--   cnt, sum  requests and tokens of the members of rpm:<kid>
--   day, n    the day start (as passed) of the last reservation, and the requests
--             reserved since that day start
--   dt        the tokens reserved since that day start (corrected by settlements)
--   old       no later than its oldest member's instant (0 when it holds none)
--   seq       the last reservation id issued on the key
--   lim       its limits as registered in CFG (a copy, so a decision reads one hash)
-- nil summary: a key never used (its reservations, if any, are dropped).
-- `slot`: fill the reused table of that number instead of making one.
local function current(kid, s, tok, slot)
  if not DAY_S then days() end
  local u
  if slot then
    u = UPOOL[slot]
    if not u then u = {}; UPOOL[slot] = u end
  else
    u = {}
  end
  if s then
    local p = MEMO.parsed[s]
    if not p then
      local c, d, n, t, o, q, l = string.match(s, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)|(.*)$')
      p = {tonumber(c), d, tonumber(n), tonumber(t), tonumber(o), tonumber(q), l}
    end
    u.cnt, u.sum, u.day, u.n, u.dt = p[1], tonumber(tok) or 0, p[2], p[3], p[4]
    u.old, u.seq = p[5], p[6]
    if p[7] ~= '' then u.lim = p[7] else u.lim = nil end
  else
    redis.call('DEL', k_rpm(kid))
    u.cnt, u.sum, u.day, u.n, u.dt, u.old, u.seq, u.lim = 0, 0, '0', 0, 0, 0, 0, nil
  end
  if u.day == DAY_S then u.today, u.ttoday = u.n, u.dt else u.today, u.ttoday = 0, 0 end
  return u
end

-- The field of a key's token count in K_USE.
local function skey(kid)
  local f = SKEY[kid]
  if f then return f end
  f = kid .. ':s'
  if N_SKEY >= 100000 then SKEY, N_SKEY = {}, 0 end
  SKEY[kid], N_SKEY = f, N_SKEY + 1
  return f
end

-- The summary string of u.
local function summary_s(u)
  local l = u.lim or ''
  local s = string.format('%d %s %d %d %d %d|%s', u.cnt, u.day, u.n, u.dt, u.old, u.seq, l)
  if MEMO.n_parsed >= MEMO.MAX then MEMO.parsed, MEMO.n_parsed = {}, 0 end
  MEMO.parsed[s], MEMO.n_parsed = {u.cnt, u.day, u.n, u.dt, u.old, u.seq, l}, MEMO.n_parsed + 1
  return s
end

-- HSET arguments that store u, written into `args` after its first `k`; returns the
-- new count.
local function put_use(args, k, kid, u)
  args[k + 1] = kid
  args[k + 2] = summary_s(u)
  args[k + 3] = skey(kid)
  args[k + 4] = int_s(u.sum)
  return k + 4
end

-- HSET arguments that store u, in a new table.
local function use_args(kid, u)
  local args = {}
  put_use(args, 0, kid, u)
  return args
end

-- Tokens of a reservation member "<id>:<tokens>".
local function tokens_of(member) return tonumber(string.match(member, ':(%d+)$')) or 0 end

-- Drop the members that left the window and recount what is left.
local function trim(u, kid)
  local zk = k_rpm(kid)
  if not CUTOFF_S then CUTOFF_S = string.format('%d', CUTOFF) end
  local gone = redis.call('ZRANGEBYSCORE', zk, '-inf', CUTOFF_S)
  local n = #gone
  if n > 0 then
    local freed = 0
    for i = 1, n do freed = freed + tokens_of(gone[i]) end
    redis.call('ZREMRANGEBYRANK', zk, '0', int_s(n - 1))
    u.cnt, u.sum = u.cnt - n, u.sum - freed
  end
  local first = redis.call('ZRANGE', zk, '0', '0', 'WITHSCORES')
  if #first == 0 then  -- nothing held (or expired with the key): nothing counts
    u.cnt, u.sum, u.old = 0, 0, 0
  else
    u.old = tonumber(first[2])
  end
end

-- Trim u if a member may have left the window; true if it did.
local function trim_due(u, kid)
  if u.cnt > 0 and u.old <= CUTOFF then trim(u, kid); return true end
  return false
end

-- Usage of one key, trimmed (and written back if that changed it).
local function usage(kid)
  local r = redis.call('HMGET', K_USE, kid, skey(kid))
  local u = current(kid, r[1], r[2])
  if trim_due(u, kid) or not r[1] then redis.call('HSET', K_USE, unpack(use_args(kid, u))) end
  return u
end

-- A group's usage, untrimmed, its limits (nil: the group is not registered, its keys
-- count as ungrouped) and whether its summary must be written.
local function group_read(g)
  local r = redis.call('HMGET', K_USE, g, skey(g))
  local u = current(g, r[1], r[2])
  local dirty = not r[1]
  if not u.lim then
    u.lim, dirty = redis.call('HGET', K_GROUPS, g) or nil, true
  end
  return u, parse_limits(u.lim), dirty
end

-- A group's usage, trimmed (and written back if that changed it), and its limits.
local function group_usage(g)
  local u, glim, dirty = group_read(g)
  if trim_due(u, g) then dirty = true end
  if dirty and glim then redis.call('HSET', K_USE, unpack(use_args(g, u))) end
  return u, glim
end

-- The member key ids of a group.
local function group_members(g)
  local out = {}
  local s = redis.call('HGET', K_GROUPS, g .. ':k')
  if s then for m in string.gmatch(s, '[^,]+') do out[#out + 1] = m end end
  return out
end

-- Count one more request of `est` tokens in u (a key's or a group's).
local function add_use(u, est)
  if u.cnt == 0 then u.old = NOW end
  u.cnt, u.sum = u.cnt + 1, u.sum + est
  if u.day ~= DAY_S then u.day, u.n, u.dt = DAY_S, 0, 0 end
  u.n, u.dt = u.n + 1, u.dt + est
  if u.dt > DT_MAX then u.dt = DT_MAX end
  u.today, u.ttoday = u.n, u.dt
end

-- True if a request of `est` tokens fits the counts of u now (counts that may still
-- hold members out of the window: then it may fit although this says no).
local function fits(lim, est, u)
  return u.cnt < lim.rpm and u.sum + est <= lim.tpm and (lim.rpd <= 0 or u.today < lim.rpd)
         and (lim.tpd <= 0 or u.ttoday + est <= lim.tpd)
end

-- Earliest instant at which a request of `est` tokens fits this key, ignoring cooldowns
-- and assuming nothing else is reserved meanwhile. INF if it never fits (est > tpm).
-- Also returns the limiting reason ('' when it fits now). Exact on untrimmed counts:
-- the members out of the window are the oldest, so the member found is the same.
local function fit_time(kid, lim, est, u)
  if est > lim.tpm then return INF, 'tpm' end
  if lim.tpd > 0 and est > lim.tpd then return INF, 'tpd' end
  if fits(lim, est, u) then return NOW, '' end
  if not DAY_S then days() end
  local at, why = NOW, ''
  local zk = k_rpm(kid)
  local count = u.cnt
  if count >= lim.rpm then
    local e = redis.call('ZRANGE', zk, count - lim.rpm, count - lim.rpm, 'WITHSCORES')
    local ts = tonumber(e[2]) + WINDOW
    if ts > at then at, why = ts, 'rpm' end
  end
  if u.sum + est > lim.tpm then
    local need = u.sum + est - lim.tpm
    local freed, idx, found = 0, 0, nil
    while found == nil do
      local e = redis.call('ZRANGE', zk, idx, idx + 99, 'WITHSCORES')
      if #e == 0 then break end
      for j = 1, #e, 2 do
        freed = freed + tokens_of(e[j])
        if freed >= need then found = tonumber(e[j + 1]) + WINDOW; break end
      end
      idx = idx + 100
    end
    if found == nil then found = INF end
    if found > at then at, why = found, 'tpm' end
  end
  if lim.rpd > 0 and u.today >= lim.rpd then
    if NEXT_RESET > at then at, why = NEXT_RESET, 'rpd' end
  end
  if lim.tpd > 0 and u.ttoday + est > lim.tpd then
    if NEXT_RESET > at then at, why = NEXT_RESET, 'tpd' end
  end
  return at, why
end

-- An instant as a ZADD score: the formatted NOW when it is now.
local function score_s(at)
  if at == NOW then return NOW_S end
  return int_s(at)
end

-- Remaining cooldown end (microseconds) or nil, and its reason.
local function cooldown_until(kid)
  local ms = redis.call('PTTL', k_cool(kid))
  if ms and ms > 0 then
    return NOW + ms * 1000, redis.call('GET', k_cool(kid))
  end
  return nil, nil
end

-- Earliest instant a request of `est` tokens fits key kid and its group, and why not
-- now; then when its group alone would admit it (NOW: it would, or no group).
local function key_fit(kid, lim, est, u)
  local at, why = fit_time(kid, lim, est, u)
  local gat = NOW
  if lim.group then
    local gu, glim = group_usage(lim.group)
    if glim then
      local gwhy
      gat, gwhy = fit_time(lim.group, glim, est, gu)
      if gat > at then at, why = gat, 'group ' .. gwhy end
    end
  end
  return at, why, gat
end

-- Members of group g all wait until at least `at` (their scores only rise); its
-- @<group>:b mark says so until capacity of the group is freed. Only the sets of its
-- members' tiers (@<group>:t) are touched; the learned group's members change without
-- a registration, so its are the pool's.
local function group_full(g, at)
  if at == INF then at = NOW + 86400000000 end
  local s, ms = score_s(at), group_members(g)
  local ts
  if g == LEARNED_GROUP then ts = redis.call('HGET', CFG, TIERS_FIELD)
  else ts = redis.call('HGET', K_GROUPS, g .. ':t') end
  local sets = tier_sets(ts)
  for _, set in ipairs(sets) do  -- XX: a key is only in its own tier's set
    for i = 1, #ms, 500 do  -- (a call takes a few thousand arguments at most)
      local args = {'XX', 'GT'}
      for j = i, math.min(i + 499, #ms) do args[#args + 1] = s; args[#args + 1] = ms[j] end
      redis.call('ZADD', set, unpack(args))
    end
  end
  redis.call('HSET', K_USE, g .. ':b', '1')
end

-- Score of a key in the availability set: the earliest instant it could admit the
-- smallest request (every cooldown raises it, so a score <= now means no cooldown; so
-- does its group being full). An available key keeps its place in the
-- least-recently-used order.
local function rescore(kid)
  local lim = limits(kid)
  if not lim or redis.call('HEXISTS', K_DISABLED, kid) == 1 then
    unlist(kid, lim)
    return
  end
  local set = k_avail(lim)
  local at, _, gat = key_fit(kid, lim, 1, usage(kid))
  if gat > NOW then redis.call('HSET', K_USE, lim.group .. ':b', '1') end
  local cu = cooldown_until(kid)
  if cu and cu > at then at = cu end
  if at == INF then at = NOW + 86400000000 end
  if at <= NOW then
    local cur = tonumber(redis.call('ZSCORE', set, kid))
    if cur == nil or cur > NOW then redis.call('ZADD', set, NOW_S, kid) end
  else
    redis.call('ZADD', set, score_s(at), kid)
  end
end

-- After capacity of group g was freed: its members that wait because of it are rescored.
local function group_freed(g)
  if redis.call('HDEL', K_USE, g .. ':b') == 0 then return end
  for _, m in ipairs(group_members(g)) do
    local sc = avail_score(m)
    if sc and sc > NOW then rescore(m) end
  end
end

-- A capped tenant (acquire.lua, settle.lua) is counted like a key named
-- TENANT.MARK .. <digest> (a key id never starts with '~'): its summary and token count
-- in use, its reservations in rpm:~t:<digest> as "<reservation id>@<key id>:<tokens>".
-- Its cap comes with each acquire as a limits string "rpm tpm 0 0 1 -" (0: none).

-- Whether a request of `est` tokens fits tenant `tid` under the limits string `lim_s`;
-- its usage (a table of its own), and when not, the instant it would fit and why. A
-- trim (the window moved on) is written back at once.
function TENANT.fit(tid, lim_s, est)
  local r = redis.call('HMGET', K_USE, tid, skey(tid))
  local u = current(tid, r[1], r[2])
  local lim = parse_limits(lim_s)
  local dirty = not r[1]
  local ok = fits(lim, est, u)
  if u.cnt > 0 and u.old <= (ok and STALE or CUTOFF) then
    trim(u, tid)
    dirty = true
    if not ok then ok = fits(lim, est, u) end
  end
  if dirty then redis.call('HSET', K_USE, unpack(use_args(tid, u))) end
  if ok then return u, true end
  local at, why = fit_time(tid, lim, est, u)
  return u, false, at, why
end

-- Count a granted request of `est` tokens (reservation member `member`) for tenant
-- `tid` of usage u (from TENANT.fit).
function TENANT.take(tid, u, est, member)
  local renew = u.cnt == 0 or u.day ~= DAY_S
  add_use(u, est)
  redis.call('HSET', K_USE, unpack(use_args(tid, u)))
  local zk = k_rpm(tid)
  redis.call('ZADD', zk, NOW_S, member)
  if renew then redis.call('EXPIRE', zk, KEY_TTL_S) end
end

-- Count one event of this minute (by Redis's clock) under field code[:kid] of the pool's
-- rates:<minute> hash; the first count of a field (re)sets the bucket's expiry.
local function count_rate(code, kid)
  local k = BASE .. 'rates:' .. string.format('%d', math.floor(NOW / RATE_BUCKET_US))
  local f = code
  if kid ~= '' then f = code .. ':' .. kid end
  if redis.call('HINCRBY', k, f, '1') == 1 then redis.call('EXPIRE', k, RATE_TTL_S) end
end

-- Learned limits (learn.lua): hash learned, field '<kind>:<id>' (kind rpm|tpm|rpd|tpd, id
-- a key id or '@<group>') -> "<value> <learned at us> <expires us> <flag> <source>";
-- flag 'r': the value may exceed the file's, '-': it only lowers it. LEARN_KINDS (from
-- the schema) names the kinds in this order: rpm, tpm, rpd, tpd. Field
-- LEARNED_GROUP_KIND .. ':<key id>' puts a key of no group into the pool's learned group
-- LEARNED_GROUP (its value).

-- The limits string `file_s` ("rpm tpm rpd tpd weight group[ tier]", as the file gives
-- them) of `id` with its learned limits applied (expired ones are deleted), and the
-- instant the first of them expires (INF: none).
local function effective(id, file_s)
  local kl = BASE .. 'learned'
  local recs = redis.call('HMGET', kl, LEARN_KINDS[1] .. ':' .. id, LEARN_KINDS[2] .. ':' .. id,
                          LEARN_KINDS[3] .. ':' .. id, LEARN_KINDS[4] .. ':' .. id,
                          LEARNED_GROUP_KIND .. ':' .. id)
  if not (recs[1] or recs[2] or recs[3] or recs[4] or recs[5]) then return file_s, INF end
  local a, b, d, t, w, grp, tier = string.match(file_s, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)(.*)$')
  local vals, first = {a, b, d, t}, INF
  for i = 1, 5 do
    local r = recs[i]
    if r then
      local v, exp, flag = string.match(r, '^(%S+) %d+ (%d+) (%S)')
      exp = tonumber(exp)
      if exp <= NOW then
        redis.call('HDEL', kl, (LEARN_KINDS[i] or LEARNED_GROUP_KIND) .. ':' .. id)
      else
        if i == 5 then
          if grp == '-' then grp = v end
        else
          local f = tonumber(vals[i])
          if flag == 'r' or f <= 0 or tonumber(v) < f then vals[i] = v end
        end
        if exp < first then first = exp end
      end
    end
  end
  return vals[1] .. ' ' .. vals[2] .. ' ' .. vals[3] .. ' ' .. vals[4] .. ' ' .. w .. ' ' .. grp
         .. tier, first
end

-- The pool's queue of waiters (acquire.lua, queue.lua; layout in _schema): q (zset of
-- members "<seq:012><ticket>" scored by class and round), qt (ticket -> "<expires_us>
-- <member> <prio>:<tenant> <est> <exclusions>"), qc (every ticket's entry "<class>
-- <round:010> <ticket>", all scored 0: a tenant's tickets by round, read by lex), qr
-- (rounds served, arrivals, pace), and the channel q (a ticket whose turn may have
-- come). Its keys are kept QU.TTL_MS past the last change (from the header: longer than
-- any ticket lives), and deleted when the last ticket leaves.

-- A ticket's record: expiry (us), member, class ("<prio>:<tenant>"), the estimate and
-- the exclusions ("k1,k2", '-' none) its caller last asked with.
function QU.ticket(rec)
  local e, m, c, est, ex = string.match(rec, '^(%d+) (%S+) (%S+) (%d+) (%S+)$')
  return tonumber(e), m, c, tonumber(est), ex
end

-- The round of score `sc` in class `c`.
function QU.round(sc, c)
  return sc - (MAX_PRIORITY - tonumber(string.match(c, '^(-?%d+):'))) * QUEUE_ROUND
end

-- Ticket `t`'s entry in qc (class c, round r).
function QU.entry(c, r, t)
  return c .. ' ' .. string.format('%010d', r) .. ' ' .. t
end

-- Take ticket `t` (member m, class c, score sc) out.
function QU.remove(t, m, c, sc)
  redis.call('ZREM', BASE .. 'q', m)
  redis.call('HDEL', BASE .. 'qt', t)
  if c and sc then redis.call('ZREM', BASE .. 'qc', QU.entry(c, QU.round(sc, c), t)) end
end

-- The live head of the queue after purging (at most 64) tickets that expired or lost
-- their record: member, score, ticket; nil when the queue is empty (its keys deleted),
-- or when 64 purges found no live head (the rest are purged by the next call: meanwhile
-- nobody is held back by a ticket not checked). After a purge the new head is signalled.
function QU.head()
  local q, qt = BASE .. 'q', BASE .. 'qt'
  local purged = false
  local h
  for _ = 1, 64 do
    h = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if #h == 0 then
      redis.call('DEL', qt, BASE .. 'qr', BASE .. 'qc')
      return nil
    end
    local m, sc = h[1], tonumber(h[2])
    local t = string.sub(m, 13)
    local rec = redis.call('HGET', qt, t)
    local exp, c = nil, nil
    if rec then
      local e, _m, cc = QU.ticket(rec)
      exp, c = e, cc
    end
    if exp and exp > NOW then
      if purged then redis.call('PUBLISH', q, t) end
      return m, sc, t
    end
    QU.remove(t, m, c, sc)
    purged = true
  end
  return nil
end

-- The class, round and score a new ticket of priority `prio_s` and tenant `ten` would
-- take: after the tenant's last ticket still queued and its last turn taken (a ticket
-- served, or a grant without one: qr's field of the class), and not before the round
-- last served. So a tenant's tickets keep their order whichever leave, and a tenant
-- has one turn a round.
function QU.place(prio_s, ten)
  local c = prio_s .. ':' .. ten
  local r = redis.call('HMGET', BASE .. 'qr', prio_s, c)
  local round = (tonumber(r[2]) or 0) + 1
  local last = redis.call('ZREVRANGEBYLEX', BASE .. 'qc', '[' .. c .. ' ~', '[' .. c .. ' ',
                          'LIMIT', 0, 1)
  if #last > 0 then
    local lr = tonumber(string.sub(last[1], #c + 2, #c + 11)) + 1
    if lr > round then round = lr end
  end
  local served = tonumber(r[1]) or 0
  if served > round then round = served end
  return c, round, (MAX_PRIORITY - tonumber(prio_s)) * QUEUE_ROUND + round
end

function QU.expire()
  for _, k in ipairs({BASE .. 'q', BASE .. 'qt', BASE .. 'qr', BASE .. 'qc'}) do
    redis.call('PEXPIRE', k, QU.TTL_MS)
  end
end

-- Enqueue ticket `t` in class `c`, round `round` (score sc, from QU.place), expiring at
-- `exp` (us), its record ending with `tail` ("<est> <exclusions>"): its member.
function QU.add(t, c, round, sc, exp, tail)
  local seq = redis.call('HINCRBY', BASE .. 'qr', '~seq', 1)
  local m = string.format('%012d', seq) .. t
  redis.call('ZADD', BASE .. 'q', int_s(sc), m)
  redis.call('HSET', BASE .. 'qt', t, int_s(exp) .. ' ' .. m .. ' ' .. c .. ' ' .. tail)
  redis.call('ZADD', BASE .. 'qc', 0, QU.entry(c, round, t))
  return m
end

-- Ticket `t` (member m, class c, score sc) was served: its tenant's turn and the round
-- advance, the pace is measured, and the next head is signalled.
function QU.served(t, m, c, sc)
  QU.remove(t, m, c, sc)
  local qr = BASE .. 'qr'
  local r = redis.call('HMGET', qr, '~last', '~gap', c)
  local last, gap = tonumber(r[1]), tonumber(r[2])
  if last then
    local d = NOW - last
    gap = gap and math.floor(0.75 * gap + 0.25 * d) or d
    redis.call('HSET', qr, '~gap', int_s(gap))
  end
  local round = QU.round(sc, c)
  local turn = tonumber(r[3])
  if not turn or turn < round then turn = round end
  redis.call('HSET', qr, string.match(c, '^(-?%d+):'), int_s(round), c, int_s(turn),
             '~last', NOW_S)
  local _, _, nt = QU.head()
  if nt then redis.call('PUBLISH', BASE .. 'q', nt) end
end

-- A caller of class `c` (priority `prio_s`) granted without a ticket in round `round`
-- (from QU.place): while tickets of its priority wait, that is its tenant's turn.
function QU.charge(prio_s, c, round)
  local base = (MAX_PRIORITY - tonumber(prio_s)) * QUEUE_ROUND
  if redis.call('ZCOUNT', BASE .. 'q', '(' .. int_s(base), '(' .. int_s(base + QUEUE_ROUND)) > 0 then
    redis.call('HSET', BASE .. 'qr', c, int_s(round))
  end
end

-- Capacity returned early (a release, fewer tokens, a key back): signal the head.
function QU.wake()
  local q = BASE .. 'q'
  local h = redis.call('ZRANGE', q, '0', '0')
  if #h > 0 then
    redis.call('PUBLISH', q, string.sub(h[1], 13))
  end
end
