-- Shared prelude of every rotating-llm limiter script (prepended at load time).
--
-- Every script is called as:  KEYS[1] = <prefix>{<pool>}:avail   (zset key_id -> next-possible-time)
--                             KEYS[2] = <prefix>{<pool>}:cfg     (hash key_id -> "rpm tpm rpd weight")
--                             ARGV[1] = window length in microseconds
--                             ARGV[2] = comma-separated UTC microsecond instants of local midnights
--                                       (daily reset boundaries around now, ascending)
-- Other keys are derived from KEYS[1] by replacing the trailing "avail", so they share
-- the pool's hash tag and the script stays on one cluster slot:
--   use            hash key_id -> usage summary "cnt sum day n old seq" (see parse_use)
--   rpm:<kid>      zset reservation id -> instant it counts from
--   tpm:<kid>      hash reservation id -> tokens
--   cooldown:<kid>, backoff:<kid>, disabled (hash key_id -> reason)
--
-- Times are microseconds on Redis's clock (TIME); client clocks never decide.
--
-- This runs on every call, on the decision's hot path, so it does as little as it can:
-- each redis.call, each element of its reply and each number passed to one (formatted
-- with "%.17g") costs about a microsecond. Instants passed often are formatted once, and
-- a key's counters live in one summary string that a decision reads for all candidates
-- with one HMGET.

local AVAIL = KEYS[1]
local CFG = KEYS[2]
local BASE = string.sub(AVAIL, 1, #AVAIL - 5)
local K_USE = BASE .. 'use'
local K_DISABLED = BASE .. 'disabled'
local WINDOW = tonumber(ARGV[1])
local INF = math.huge
local unpack = unpack or table.unpack  -- Lua 5.1 (Redis) and 5.4 (embedded store)

local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
local NOW_S = string.format('%d', NOW)
local CUTOFF = NOW - WINDOW
local CUTOFF_S = string.format('%d', CUTOFF)

-- Daily reset boundaries around now, parsed on first use: DAY_S is today's start as
-- passed (a string, stored as is), NEXT_RESET the next boundary after now (INF if none).
local DAY_START, DAY_S, NEXT_RESET
local function days()
  if DAY_START then return end
  DAY_START, DAY_S, NEXT_RESET = 0, '0', INF
  for b in string.gmatch(ARGV[2], '[^,]+') do
    local v = tonumber(b)
    if v <= NOW then DAY_START, DAY_S = v, b elseif v < NEXT_RESET then NEXT_RESET = v end
  end
end

local function k_rpm(kid) return BASE .. 'rpm:' .. kid end
local function k_tpm(kid) return BASE .. 'tpm:' .. kid end
local function k_cool(kid) return BASE .. 'cooldown:' .. kid end
local function k_backoff(kid) return BASE .. 'backoff:' .. kid end
-- rpm:<kid> and tpm:<kid> are kept 2-3 days past use: their expiry is renewed by the
-- first reservation of each day and set whenever they are made anew.
local KEY_TTL = 259200

-- Limits from a config string "rpm tpm rpd weight"; nil if the key is not in the pool.
local function parse_limits(c)
  if not c then return nil end
  local a, b, d, w = string.match(c, '(%S+) (%S+) (%S+) (%S+)')
  return {rpm = tonumber(a), tpm = tonumber(b), rpd = tonumber(d), weight = tonumber(w)}
end

local function limits(kid) return parse_limits(redis.call('HGET', CFG, kid)) end

-- A key's usage summary "cnt sum day n old seq":
--   cnt, sum  requests and tokens of the reservations held in rpm:<kid> / tpm:<kid>
--   day, n    the day start (as passed in ARGV[2]) of the last reservation, and the
--             requests reserved since that day start
--   old       no later than its oldest reservation's instant (0 when it holds none)
--   seq       the last reservation id issued on the key
local function parse_use(s)
  local c, sm, d, n, o, q = string.match(s, '(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)')
  return {cnt = tonumber(c), sum = tonumber(sm), day = d, n = tonumber(n),
          old = tonumber(o), seq = tonumber(q)}
end

local function use_s(u)
  return string.format('%d %d %s %d %d %d', u.cnt, u.sum, u.day, u.n, u.old, u.seq)
end

-- Drop the reservations that left the window and recount what is left.
local function trim_use(u, zk, hk)
  local gone = redis.call('ZRANGEBYSCORE', zk, '-inf', CUTOFF_S)
  local n = #gone
  if n > 0 then
    local freed = 0
    for i = 1, n, 1000 do
      local chunk = {}
      for j = i, math.min(i + 999, n) do chunk[#chunk + 1] = gone[j] end
      local toks = redis.call('HMGET', hk, unpack(chunk))
      for j = 1, #toks do freed = freed + (tonumber(toks[j]) or 0) end
      redis.call('HDEL', hk, unpack(chunk))
    end
    redis.call('ZREMRANGEBYSCORE', zk, '-inf', CUTOFF_S)
    u.cnt, u.sum = u.cnt - n, u.sum - freed
  end
  local first = redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')
  if #first == 0 then  -- nothing held (or expired with the key): nothing counts
    u.cnt, u.sum, u.old = 0, 0, 0
  else
    u.old = tonumber(first[2])
  end
end

-- No summary yet (a new key, or data written by an earlier version): count what is held.
local function rebuild(zk, hk)
  local legacy = redis.call('HMGET', hk, '_sum', '_day', '_n')
  local u = {cnt = 0, sum = 0, day = legacy[2] or '0', n = tonumber(legacy[3] or '0'),
             old = 0, seq = tonumber(redis.call('GET', BASE .. 'seq') or '0')}
  redis.call('HDEL', hk, '_sum', '_day', '_n')
  u.cnt = 1  -- make trim_use look
  trim_use(u, zk, hk)
  local ids = redis.call('ZRANGE', zk, 0, -1)
  u.cnt, u.sum = #ids, 0
  for i = 1, #ids, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #ids) do chunk[#chunk + 1] = ids[j] end
    for _, v in ipairs(redis.call('HMGET', hk, unpack(chunk))) do u.sum = u.sum + (tonumber(v) or 0) end
    for _, v in ipairs(chunk) do
      local id = tonumber(v)
      if id and id > u.seq then u.seq = id end
    end
  end
  return u
end

-- The usage of a key now, from its stored summary `s` (nil if none). Trims when the
-- oldest reservation may have left the window. Returns the summary (with `today`, the
-- requests reserved today) and whether it changed and must be written back.
local function current(zk, hk, s)
  days()
  local u, dirty
  if s then
    u, dirty = parse_use(s), false
    if u.cnt > 0 and u.old <= CUTOFF then
      trim_use(u, zk, hk)
      dirty = true
    end
  else
    u, dirty = rebuild(zk, hk), true
  end
  if u.day == DAY_S then u.today = u.n else u.today = 0 end
  return u, dirty
end

-- Usage of one key (trimmed, summary written back): requests and tokens in window,
-- requests today.
local function usage(kid)
  local u, dirty = current(k_rpm(kid), k_tpm(kid), redis.call('HGET', K_USE, kid))
  if dirty then redis.call('HSET', K_USE, kid, use_s(u)) end
  return u.cnt, u.sum, u.today
end

-- Earliest instant at which a request of `est` tokens fits this key, ignoring cooldowns
-- and assuming nothing else is reserved meanwhile. INF if it never fits (est > tpm).
-- Also returns the limiting reason ('' when it fits now).
local function fit_time(kid, lim, est, count, tsum, today)
  if est > lim.tpm then return INF, 'tpm' end
  if count < lim.rpm and tsum + est <= lim.tpm and (lim.rpd <= 0 or today < lim.rpd) then
    return NOW, ''
  end
  days()
  local at, why = NOW, ''
  local zk = k_rpm(kid)
  if count >= lim.rpm then
    local e = redis.call('ZRANGE', zk, count - lim.rpm, count - lim.rpm, 'WITHSCORES')
    local ts = tonumber(e[2]) + WINDOW
    if ts > at then at, why = ts, 'rpm' end
  end
  if tsum + est > lim.tpm then
    local need = tsum + est - lim.tpm
    local freed, idx, found = 0, 0, nil
    while found == nil do
      local e = redis.call('ZRANGE', zk, idx, idx + 99, 'WITHSCORES')
      if #e == 0 then break end
      local ids = {}
      for j = 1, #e, 2 do ids[#ids + 1] = e[j] end
      local toks = redis.call('HMGET', k_tpm(kid), unpack(ids))
      for j = 1, #ids do
        freed = freed + (tonumber(toks[j]) or 0)
        if freed >= need then found = tonumber(e[2 * j]) + WINDOW; break end
      end
      idx = idx + 100
    end
    if found == nil then found = INF end
    if found > at then at, why = found, 'tpm' end
  end
  if lim.rpd > 0 and today >= lim.rpd then
    if NEXT_RESET > at then at, why = NEXT_RESET, 'rpd' end
  end
  return at, why
end

-- An instant as a ZADD score: the formatted NOW when it is now.
local function score_s(at)
  if at == NOW then return NOW_S end
  return string.format('%d', at)
end

-- Remaining cooldown end (microseconds) or nil, and its reason.
local function cooldown_until(kid)
  local ms = redis.call('PTTL', k_cool(kid))
  if ms and ms > 0 then
    return NOW + ms * 1000, redis.call('GET', k_cool(kid))
  end
  return nil, nil
end

-- Score of a key in the availability set: the earliest instant it could admit the
-- smallest request (every cooldown raises it, so a score <= now means no cooldown).
-- An available key keeps its place in the least-recently-used order.
local function rescore(kid)
  if redis.call('HEXISTS', K_DISABLED, kid) == 1 then
    redis.call('ZREM', AVAIL, kid)
    return
  end
  local lim = limits(kid)
  if not lim then redis.call('ZREM', AVAIL, kid); return end
  local count, tsum, today = usage(kid)
  local at = fit_time(kid, lim, 1, count, tsum, today)
  local cu = cooldown_until(kid)
  if cu and cu > at then at = cu end
  if at == INF then at = NOW + 86400000000 end
  if at <= NOW then
    local cur = tonumber(redis.call('ZSCORE', AVAIL, kid))
    if cur == nil or cur > NOW then redis.call('ZADD', AVAIL, NOW_S, kid) end
  else
    redis.call('ZADD', AVAIL, score_s(at), kid)
  end
end
