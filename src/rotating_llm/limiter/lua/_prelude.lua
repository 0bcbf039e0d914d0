-- Shared prelude of every rotating-llm limiter script (prepended at load time).
--
-- Every script is called as:  KEYS[1] = <prefix>{<pool>}:avail   (zset key_id -> next-possible-time)
--                             KEYS[2] = <prefix>{<pool>}:cfg     (hash key_id -> "rpm tpm rpd weight")
--                             ARGV[1] = window length in microseconds
--                             ARGV[2] = comma-separated UTC microsecond instants of local midnights
--                                       (daily reset boundaries around now, ascending)
-- Per-key keys are derived from KEYS[1] by replacing the trailing "avail", so they
-- share the pool's hash tag and the script stays on one cluster slot.
--
-- Times are microseconds on Redis's clock (TIME); client clocks never decide.

local AVAIL = KEYS[1]
local CFG = KEYS[2]
local BASE = string.sub(AVAIL, 1, #AVAIL - 5)
local WINDOW = tonumber(ARGV[1])
local INF = math.huge
local unpack = unpack or table.unpack  -- Lua 5.1 (Redis) and 5.4 (embedded store)

local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000000 + tonumber(t[2])

local DAY_START, NEXT_RESET = 0, INF
for b in string.gmatch(ARGV[2], '[^,]+') do
  local v = tonumber(b)
  if v <= NOW then DAY_START = v elseif v < NEXT_RESET then NEXT_RESET = v end
end

local function k_rpm(kid) return BASE .. 'rpm:' .. kid end
local function k_tpm(kid) return BASE .. 'tpm:' .. kid end
local function k_cool(kid) return BASE .. 'cooldown:' .. kid end
local function k_backoff(kid) return BASE .. 'backoff:' .. kid end
local K_DISABLED = BASE .. 'disabled'
local K_SEQ = BASE .. 'seq'
-- Per key: rpm:<kid> zset (reservation id -> instant) and tpm:<kid> hash (reservation id ->
-- tokens, plus _sum = tokens in window, _day/_n = today's requests). Kept 3 days past use.
local KEY_TTL = 259200

-- Limits from a config string "rpm tpm rpd weight"; nil if the key is not in the pool.
local function parse_limits(c)
  if not c then return nil end
  local a, b, d, w = string.match(c, '(%S+) (%S+) (%S+) (%S+)')
  return {rpm = tonumber(a), tpm = tonumber(b), rpd = tonumber(d), weight = tonumber(w)}
end

local function limits(kid) return parse_limits(redis.call('HGET', CFG, kid)) end

-- Drop the reservations that left the sliding window and subtract their tokens.
local function trim(kid)
  local zk, hk = k_rpm(kid), k_tpm(kid)
  local cutoff = NOW - WINDOW
  local old = redis.call('ZRANGEBYSCORE', zk, '-inf', cutoff)
  local n = #old
  if n == 0 then return end
  local freed = 0
  for i = 1, n, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, n) do chunk[#chunk + 1] = old[j] end
    local toks = redis.call('HMGET', hk, unpack(chunk))
    for j = 1, #toks do freed = freed + (tonumber(toks[j]) or 0) end
    redis.call('HDEL', hk, unpack(chunk))
  end
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', cutoff)
  if freed ~= 0 then redis.call('HINCRBY', hk, '_sum', -freed) end
end

-- Current usage of one key (after trim): requests and tokens in window, requests today.
local function usage(kid)
  local count = redis.call('ZCARD', k_rpm(kid))
  local h = redis.call('HMGET', k_tpm(kid), '_sum', '_day', '_n')
  local tsum = tonumber(h[1] or '0')
  local today = 0
  if h[2] and tonumber(h[2]) == DAY_START then today = tonumber(h[3] or '0') end
  return count, tsum, today
end

-- Earliest instant at which a request of `est` tokens fits this key, ignoring cooldowns
-- and assuming nothing else is reserved meanwhile. INF if it never fits (est > tpm).
-- Also returns the limiting reason ('' when it fits now).
local function fit_time(kid, lim, est, count, tsum, today)
  if est > lim.tpm then return INF, 'tpm' end
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
    if cur == nil or cur > NOW then redis.call('ZADD', AVAIL, NOW, kid) end
  else
    redis.call('ZADD', AVAIL, at, kid)
  end
end
