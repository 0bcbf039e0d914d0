-- Settle a reservation: ARGV[SETTLE_KEY_ID], ARGV[SETTLE_RESERVATION_ID], its
-- ARGV[SETTLE_RESERVED] tokens, made on day ARGV[SETTLE_DAY] (its day start as passed),
-- ARGV[SETTLE_ACTION]:
--   'complete'  ARGV[SETTLE_VALUE] = actual tokens: correct the reservation to the real
--               usage, and date it from now: the provider counted the request on
--               arrival, which was no later than this, so the slot frees a full window
--               after that; with ARGV[SETTLE_DAILY] containing 'k' (the key has a daily
--               token limit) the day's token count is corrected too;
--   'release'   the request never reached the provider, so it no longer counts
--               (request, tokens, today's request and tokens).
-- Returns the token delta applied (0 if the reservation already left the window: its
-- day's token count then stays as reserved). Settling again changes nothing more.
local kid, resid = ARGV[SETTLE_KEY_ID], ARGV[SETTLE_RESERVATION_ID]
local reserved, action = ARGV[SETTLE_RESERVED], ARGV[SETTLE_ACTION]
local day = ARGV[SETTLE_DAY]
local zk = k_rpm(kid)
local member = resid .. ':' .. reserved
local delta = 0
if action == 'complete' then
  local actual = ARGV[SETTLE_VALUE]
  if actual == reserved then
    redis.call('ZADD', zk, 'XX', 'GT', NOW_S, member)
    return 0
  end
  if redis.call('ZREM', zk, member) == 0 then return 0 end  -- settled, or out of window
  redis.call('ZADD', zk, NOW_S, resid .. ':' .. actual)
  delta = tonumber(actual) - tonumber(reserved)
  redis.call('HINCRBY', K_USE, skey(kid), delta)
  if string.find(ARGV[SETTLE_DAILY], 'k', 1, true) then
    local s = redis.call('HGET', K_USE, kid)
    if s then
      local u = current(kid, s, 0)
      if u.day == day then
        u.dt = u.dt + delta
        if u.dt < 0 then u.dt = 0 end
        redis.call('HSET', K_USE, kid, summary_s(u))
      end
    end
  end
elseif action == 'release' then
  if redis.call('ZREM', zk, member) == 0 then return 0 end
  local r = redis.call('HMGET', K_USE, kid, skey(kid))
  local u = current(kid, r[1], r[2])
  delta = -tonumber(reserved)
  u.cnt, u.sum = u.cnt - 1, u.sum + delta
  if u.cnt <= 0 then u.cnt, u.sum, u.old = 0, 0, 0 end
  if u.day == day then
    if u.n > 0 then u.n = u.n - 1 end
    u.dt = u.dt + delta
    if u.dt < 0 then u.dt = 0 end
  end
  redis.call('HSET', K_USE, unpack(use_args(kid, u)))
else
  return redis.error_reply('unknown settle action ' .. tostring(action))
end
-- only freed capacity can make a waiting key available earlier
if delta < 0 or action == 'release' then
  local sc = tonumber(redis.call('ZSCORE', AVAIL, kid))
  if sc and sc > NOW then rescore(kid) end
end
return delta
