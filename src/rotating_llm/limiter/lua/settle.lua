-- Settle a reservation: ARGV[SETTLE_KEY_ID], ARGV[SETTLE_RESERVATION_ID], its
-- ARGV[SETTLE_RESERVED] tokens, made on day ARGV[SETTLE_DAY] (its day start as passed),
-- on the key's quota group ARGV[SETTLE_GROUP] too ('@<group>', or '' for none),
-- ARGV[SETTLE_ACTION]:
--   'complete'  ARGV[SETTLE_VALUE] = actual tokens: correct the reservation to the real
--               usage, and date it from now: the provider counted the request on
--               arrival, which was no later than this, so the slot frees a full window
--               after that; the day's token count is corrected too for the key when
--               ARGV[SETTLE_DAILY] contains 'k' (it has a daily token limit), for the
--               group when it contains 'g';
--   'release'   the request never reached the provider, so it no longer counts
--               (request, tokens, today's request and tokens), on the key and its group.
-- ARGV[SETTLE_OUTCOME] (a rate code: RATE_SERVED, RATE_RATE_LIMITED, or '') is counted
-- for the key in this minute's rates bucket when the settlement applies (count_rate).
-- Returns the key's token delta applied (0 if the reservation already left the window:
-- its day's token count then stays as reserved). Settling again changes nothing more
-- (but a 'complete' resent with unchanged tokens counts its outcome again).
local kid, resid = ARGV[SETTLE_KEY_ID], ARGV[SETTLE_RESERVATION_ID]
local reserved, action = ARGV[SETTLE_RESERVED], ARGV[SETTLE_ACTION]
local day, daily, g = ARGV[SETTLE_DAY], ARGV[SETTLE_DAILY], ARGV[SETTLE_GROUP]
if g == '' then g = nil end
local gm = g and (resid .. '@' .. kid)  -- the reservation's member id in the group's

-- Correct the reservation `m` of `id` (a key or a group) by `delta`: true if it was held.
local function correct(id, m, actual, delta, fix_day)
  local zk = k_rpm(id)
  if redis.call('ZREM', zk, m .. ':' .. reserved) == 0 then return false end
  redis.call('ZADD', zk, NOW_S, m .. ':' .. actual)
  redis.call('HINCRBY', K_USE, skey(id), delta)
  if fix_day then
    local s = redis.call('HGET', K_USE, id)
    if s then
      local u = current(id, s, 0)
      if u.day == day then
        u.dt = u.dt + delta
        if u.dt < 0 then u.dt = 0 end
        redis.call('HSET', K_USE, id, summary_s(u))
      end
    end
  end
  return true
end

-- True if the reservation `m` of `id` is still in the window: one that left it (trimmed
-- or not yet) is never re-dated into it; the trim takes it out as reserved.
local function in_window(id, m)
  local sc = redis.call('ZSCORE', k_rpm(id), m .. ':' .. reserved)
  return sc ~= false and tonumber(sc) > CUTOFF
end

-- Release the reservation `m` of `id`: true if it was held.
local function release(id, m)
  if redis.call('ZREM', k_rpm(id), m .. ':' .. reserved) == 0 then return false end
  local r = redis.call('HMGET', K_USE, id, skey(id))
  local u = current(id, r[1], r[2])
  local n = tonumber(reserved)
  u.cnt, u.sum = u.cnt - 1, u.sum - n
  if u.cnt <= 0 then u.cnt, u.sum, u.old = 0, 0, 0 end
  if u.day == day then
    if u.n > 0 then u.n = u.n - 1 end
    u.dt = u.dt - n
    if u.dt < 0 then u.dt = 0 end
  end
  redis.call('HSET', K_USE, unpack(use_args(id, u)))
  return true
end

local delta, freed, gfreed = 0, false, false
local outcome = ARGV[SETTLE_OUTCOME]
if action == 'complete' then
  local actual = ARGV[SETTLE_VALUE]
  -- the group's member was made and re-dated with the key's: it is in the window iff that is
  local kheld = in_window(kid, resid)
  local gheld = g and kheld
  if actual == reserved then
    if kheld then
      redis.call('ZADD', k_rpm(kid), 'XX', 'GT', NOW_S, resid .. ':' .. reserved)
      if outcome ~= '' then count_rate(outcome, kid) end
    end
    if gheld then redis.call('ZADD', k_rpm(g), 'XX', 'GT', NOW_S, gm .. ':' .. reserved) end
    return 0
  end
  local d = tonumber(actual) - tonumber(reserved)
  if kheld and correct(kid, resid, actual, d, string.find(daily, 'k', 1, true)) then
    delta, freed = d, d < 0
    if outcome ~= '' then count_rate(outcome, kid) end
  end
  if gheld and correct(g, gm, actual, d, string.find(daily, 'g', 1, true)) then
    gfreed = d < 0
  end
elseif action == 'release' then
  if release(kid, resid) then delta, freed = -tonumber(reserved), true end
  if g and release(g, gm) then gfreed = true end
else
  return redis.error_reply('unknown settle action ' .. tostring(action))
end
-- only freed capacity can make a waiting key available earlier
if freed then
  local sc = avail_score(kid)
  if sc and sc > NOW then rescore(kid) end
end
if gfreed then group_freed(g) end
return delta
