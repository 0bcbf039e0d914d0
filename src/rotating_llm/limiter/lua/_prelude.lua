-- Shared prelude of every rotating-llm limiter script.
--
-- Every script is called as:  KEYS[1] = <prefix>{<pool>}:avail   (zset key_id -> next-possible-time)
--                             KEYS[2] = <prefix>{<pool>}:cfg     (hash key_id -> "rpm tpm rpd weight")
--                             ARGV[1] = window length in microseconds
--                             ARGV[2] = comma-separated UTC microsecond instants of local midnights
--                                       (daily reset boundaries around now, ascending)
-- Other keys are derived from KEYS[1] by replacing the trailing "avail", so they share
-- the pool's hash tag and the script stays on one cluster slot:
--   use            hash key_id -> usage summary and limits (see parse_use)
--   rpm:<kid>      zset "<reservation id>:<tokens>" -> instant it counts from
--   cooldown:<kid>, backoff:<kid>, disabled (hash key_id -> reason)
--
-- Times are microseconds on Redis's clock (TIME); client clocks never decide.
--
-- This runs on every call, on the decision's hot path, so it does as little as it can:
-- each redis.call, each element of its reply and each number passed to one (formatted
-- with "%.17g") costs about a microsecond. Instants passed often are formatted once, and
-- a key's counters live in one summary string that a decision reads for all candidates
-- with one HMGET.

-- The same code serves as a prelude of EVAL scripts and as a function library (FCALL,
-- Redis 7+): per-call state lives in the locals below and is set by begin(), so nothing
-- here touches a global before a call starts.
local KEYS, ARGV, AVAIL, CFG, BASE, K_USE, K_DISABLED, WINDOW
local NOW, NOW_S, CUTOFF, CUTOFF_S
local DAY_START, DAY_S, NEXT_RESET
local INF = 1 / 0
local unpack  -- Lua 5.1 (Redis) and 5.4 (embedded store)
local LIMITS, N_LIMITS = {}, 0  -- parsed config strings (kept between calls of a library)

local function begin(keys, args)
  if not unpack then unpack = table.unpack or _G.unpack end
  KEYS, ARGV = keys, args
  AVAIL = KEYS[1]
  CFG = KEYS[2]
  BASE = string.sub(AVAIL, 1, #AVAIL - 5)
  K_USE = BASE .. 'use'
  K_DISABLED = BASE .. 'disabled'  -- (a concatenation costs less than a test each use)
  WINDOW = tonumber(ARGV[1])
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])
  NOW_S = string.format('%d', NOW)
  CUTOFF = NOW - WINDOW
  CUTOFF_S = nil  -- formatted when first needed
  DAY_START, DAY_S, NEXT_RESET = nil, nil, nil
end

-- Daily reset boundaries around now, parsed on first use: DAY_S is today's start as
-- passed (a string, stored as is), NEXT_RESET the next boundary after now (INF if none).
local function days()
  if DAY_START then return end
  DAY_START, DAY_S, NEXT_RESET = 0, '0', INF
  local b = {string.match(ARGV[2], '^(%d+),(%d+),(%d+),(%d+)$')}
  if #b == 0 then for v in string.gmatch(ARGV[2], '[^,]+') do b[#b + 1] = v end end
  for i = 1, #b do
    local v = tonumber(b[i])
    if v <= NOW then DAY_START, DAY_S = v, b[i] elseif v < NEXT_RESET then NEXT_RESET = v end
  end
end

local function k_rpm(kid) return BASE .. 'rpm:' .. kid end
local function k_tpm(kid) return BASE .. 'tpm:' .. kid end  -- earlier layout only
local function k_cool(kid) return BASE .. 'cooldown:' .. kid end
local function k_backoff(kid) return BASE .. 'backoff:' .. kid end
-- rpm:<kid> is kept 2-3 days past use: its expiry is renewed by the first reservation of
-- each day and set whenever it is made anew.
local KEY_TTL = 259200

-- Limits from a config string "rpm tpm rpd weight"; nil if the key is not in the pool.
-- The returned table is shared: never change it.
local function parse_limits(c)
  if not c then return nil end
  local lim = LIMITS[c]
  if lim then return lim end
  local a, b, d, w = string.match(c, '(%S+) (%S+) (%S+) (%S+)')
  lim = {rpm = tonumber(a), tpm = tonumber(b), rpd = tonumber(d), weight = tonumber(w)}
  if N_LIMITS >= 4096 then LIMITS, N_LIMITS = {}, 0 end
  LIMITS[c], N_LIMITS = lim, N_LIMITS + 1
  return lim
end

local function limits(kid) return parse_limits(redis.call('HGET', CFG, kid)) end

-- A key's usage summary "cnt sum day n old seq rpm tpm rpd weight":
--   cnt, sum  requests and tokens of the reservations held in rpm:<kid>
--   day, n    the day start (as passed in ARGV[2]) of the last reservation, and the
--             requests reserved since that day start
--   old       no later than its oldest reservation's instant (0 when it holds none)
--   seq       the last reservation id issued on the key
--   the rest  its limits as registered in CFG (a copy, so a decision reads one hash)
local function parse_use(s)
  local c, sm, d, n, o, q, l = string.match(s, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) ?(.*)$')
  return {cnt = tonumber(c), sum = tonumber(sm), day = d, n = tonumber(n),
          old = tonumber(o), seq = tonumber(q), lim = l ~= '' and l or nil}
end

local function use_s(u)
  return string.format('%d %d %s %d %d %d %s', u.cnt, u.sum, u.day, u.n, u.old, u.seq,
                       u.lim or '')
end

-- Tokens of a reservation member "<id>:<tokens>".
local function tokens_of(member) return tonumber(string.match(member, ':(%d+)$')) or 0 end

-- Drop the reservations that left the window and recount what is left.
local function trim_use(u, zk)
  if not CUTOFF_S then CUTOFF_S = string.format('%d', CUTOFF) end
  local gone = redis.call('ZRANGEBYSCORE', zk, '-inf', CUTOFF_S)
  local n = #gone
  if n > 0 then
    local freed = 0
    for i = 1, n do freed = freed + tokens_of(gone[i]) end
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

-- No summary yet (a new key, or data of an earlier layout: plain reservation ids in
-- rpm:<kid>, tokens and day counters in tpm:<kid>): rewrite what is held, count it.
local function rebuild(kid, zk)
  local hk = k_tpm(kid)
  local legacy = redis.call('HMGET', hk, '_day', '_n')
  local u = {cnt = 0, sum = 0, day = legacy[1] or '0', n = tonumber(legacy[2] or '0'),
             old = 0, seq = tonumber(redis.call('GET', BASE .. 'seq') or '0')}
  local held = redis.call('ZRANGE', zk, 0, -1, 'WITHSCORES')
  for i = 1, #held, 2 do
    local m = held[i]
    local id = tonumber(string.match(m, '^(%d+)'))
    if id and id > u.seq then u.seq = id end
    if not string.find(m, ':', 1, true) then  -- earlier layout: move the tokens in
      local tok = tonumber(redis.call('HGET', hk, m) or '0')
      redis.call('ZREM', zk, m)
      redis.call('ZADD', zk, held[i + 1], m .. ':' .. tok)
    end
  end
  redis.call('DEL', hk)
  u.cnt = 1  -- make trim_use look
  trim_use(u, zk)
  if u.cnt > 0 then
    u.cnt, u.sum = 0, 0
    for _, m in ipairs(redis.call('ZRANGE', zk, 0, -1)) do
      u.cnt, u.sum = u.cnt + 1, u.sum + tokens_of(m)
    end
  end
  return u
end

-- The usage of a key now, from its stored summary `s` (nil if none). Trims when the
-- oldest reservation may have left the window. Returns the summary (with `today`, the
-- requests reserved today) and whether it changed and must be written back.
local function current(kid, s)
  if not DAY_START then days() end
  local u, dirty
  if s then
    u, dirty = parse_use(s), false
    if u.cnt > 0 and u.old <= CUTOFF then
      trim_use(u, k_rpm(kid))
      dirty = true
    end
  else
    u, dirty = rebuild(kid, k_rpm(kid)), true
  end
  if u.day == DAY_S then u.today = u.n else u.today = 0 end
  return u, dirty
end

-- Usage of one key (trimmed, summary written back): requests and tokens in window,
-- requests today.
local function usage(kid)
  local u, dirty = current(kid, redis.call('HGET', K_USE, kid))
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
      for j = 1, #e, 2 do
        freed = freed + tokens_of(e[j])
        if freed >= need then found = tonumber(e[j + 1]) + WINDOW; break end
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
