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
-- Returns the key's token delta applied to its window (0 if the reservation already left
-- the window: it is then taken out as a trim would take it, never re-dated, and only its
-- day's token count is corrected; once trimmed, its day's count stays as reserved).
-- Capacity freed signals the head of the pool's queue (q_wake).
-- Settling again changes nothing more (but a 'complete' resent with unchanged tokens
-- counts its outcome again).
local kid, resid = ARGV[SETTLE_KEY_ID], ARGV[SETTLE_RESERVATION_ID]
local reserved, action = ARGV[SETTLE_RESERVED], ARGV[SETTLE_ACTION]
local day, daily, g = ARGV[SETTLE_DAY], ARGV[SETTLE_DAILY], ARGV[SETTLE_GROUP]
local lim = nil  -- the key's limits, once read
if g == '' then  -- a key of no group in the file may be in the learned group (learn.lua)
  lim = limits(kid)
  g = lim and lim.group == LEARNED_GROUP and LEARNED_GROUP or nil
end
local gm = g and (resid .. '@' .. kid)  -- the reservation's member id in the group's
-- ARGV[SETTLE_TENANT]: the capped tenant's digest the grant was counted for ('' none);
-- its member is settled with the key's, like a group's
local tn = ARGV[SETTLE_TENANT] ~= '' and (TENANT.MARK .. ARGV[SETTLE_TENANT]) or nil
local tm = resid .. '@' .. kid

-- Correct the reservation `m` of `id` (a key or a group) by `delta`: true if it was held.
local function correct(id, m, actual, delta, fix_day)
  local zk = k_rpm(id)
  if redis.call('ZREM', zk, m .. ':' .. reserved) == 0 then return false end
  redis.call('ZADD', zk, NOW_S, m .. ':' .. actual)
  redis.call('HINCRBY', K_USE, skey(id), int_s(delta))
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

-- ARGV[SETTLE_GRANTED_US]: the instant the grant was made (0: unknown), its members'
-- score then. A re-dating only moves a member later, so one granted within the window is
-- in it if it is held at all: its score need not be read (1 is returned; whether it is
-- held, the ZREM or ZADD that settles it says).
local granted = tonumber(ARGV[SETTLE_GRANTED_US]) or 0

-- Where the reservation `m` of `id` is: 1 in the window, 0 out of it but not trimmed yet,
-- nil gone (trimmed, released or never made). One out of the window is never re-dated.
local function where(id, m)
  if granted > CUTOFF then return 1 end
  local sc = redis.call('ZSCORE', k_rpm(id), m .. ':' .. reserved)
  if not sc then return nil end
  return tonumber(sc) > CUTOFF and 1 or 0
end

-- Take the reservation `m` of `id` out of its window, changing its day's counts by `dn`
-- requests and `dtok` tokens: true if it was held.
local function take_out(id, m, dn, dtok)
  if redis.call('ZREM', k_rpm(id), m .. ':' .. reserved) == 0 then return false end
  local r = redis.call('HMGET', K_USE, id, skey(id))
  local u = current(id, r[1], r[2])
  u.cnt, u.sum = u.cnt - 1, u.sum - tonumber(reserved)
  if u.cnt <= 0 then u.cnt, u.sum, u.old = 0, 0, 0 end
  if u.day == day then
    u.n, u.dt = u.n + dn, u.dt + dtok
    if u.n < 0 then u.n = 0 end
    if u.dt < 0 then u.dt = 0 elseif u.dt > DT_MAX then u.dt = DT_MAX end
  end
  redis.call('HSET', K_USE, unpack(use_args(id, u)))
  return true
end

local delta, freed, gfreed = 0, false, false
local outcome = ARGV[SETTLE_OUTCOME]
if action == 'complete' then
  local actual = ARGV[SETTLE_VALUE]
  local d = tonumber(actual) - tonumber(reserved)
  local kday, gday = string.find(daily, 'k', 1, true), string.find(daily, 'g', 1, true)
  -- the group's member was made and re-dated with the key's: it is where the key's is
  local at = where(kid, resid)
  if at == 0 then
    -- it left the window: taken out as a trim would take it, never re-dated; its day's
    -- tokens are corrected still (a slow call's real usage counts against its day)
    freed = take_out(kid, resid, 0, kday and d or 0)
    if g then gfreed = take_out(g, gm, 0, gday and d or 0) end
    if tn then take_out(tn, tm, 0, 0) end
    if outcome ~= '' then count_rate(outcome, kid) end
  elseif at == 1 and d == 0 then
    if redis.call('ZADD', k_rpm(kid), 'XX', 'GT', 'CH', NOW_S, resid .. ':' .. reserved) == 0 then
      return 0  -- not held (settled before, or released)
    end
    if g then redis.call('ZADD', k_rpm(g), 'XX', 'GT', NOW_S, gm .. ':' .. reserved) end
    if tn then redis.call('ZADD', k_rpm(tn), 'XX', 'GT', NOW_S, tm .. ':' .. reserved) end
    if outcome ~= '' then count_rate(outcome, kid) end
    return 0
  elseif at == 1 then
    if correct(kid, resid, actual, d, kday) then
      delta, freed = d, d < 0
      if outcome ~= '' then count_rate(outcome, kid) end
    end
    if g and correct(g, gm, actual, d, gday) then gfreed = d < 0 end
    if tn then correct(tn, tm, actual, d, false) end
  end
elseif action == 'release' then
  local n = tonumber(reserved)
  if take_out(kid, resid, -1, -n) then delta, freed = -n, true end
  if g and take_out(g, gm, -1, -n) then gfreed = true end
  if tn then take_out(tn, tm, -1, -n) end
else
  return redis.error_reply('unknown settle action ' .. tostring(action))
end
-- only freed capacity can make a waiting key available earlier
if freed then  -- a waiting key (score > now) is rescored (ZADD LT: an integer reply)
  lim = lim or limits(kid)
  if redis.call('ZADD', k_avail(lim), 'XX', 'LT', 'CH', NOW_S, kid) == 1 then rescore(kid) end
end
if gfreed then group_freed(g) end
if freed or gfreed then QU.wake() end  -- capacity back early: the queue's head may go
return delta
