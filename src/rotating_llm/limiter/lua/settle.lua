-- Settle a reservation. ARGV[3] key_id, ARGV[4] reservation id, ARGV[5] its reserved
-- tokens, ARGV[6] action:
--   'complete'  ARGV[7] = actual tokens: correct the reservation to the real usage, and
--               date it from now: the provider counted the request on arrival, which
--               was no later than this, so the slot frees a full window after that;
--   'release'   ARGV[7] = day_start of the reservation: the request never reached the
--               provider, so it no longer counts (request, tokens and today's count).
-- Returns the token delta applied (0 if the reservation already left the window).
-- Settling again changes nothing more.
local kid, resid, reserved, action = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local zk = k_rpm(kid)
local u, dirty = current(kid, redis.call('HGET', K_USE, kid))
local member = resid .. ':' .. reserved
local delta = 0
if action == 'complete' then
  local actual = ARGV[7]
  if actual == reserved then
    redis.call('ZADD', zk, 'XX', 'GT', NOW_S, member)
  elseif redis.call('ZREM', zk, member) == 1 then  -- held: re-add with the real usage
    redis.call('ZADD', zk, NOW_S, resid .. ':' .. actual)
    delta = tonumber(actual) - tonumber(reserved)
    u.sum, dirty = u.sum + delta, true
  end
elseif action == 'release' then
  if redis.call('ZREM', zk, member) == 1 then
    delta = -tonumber(reserved)
    u.cnt, u.sum, dirty = u.cnt - 1, u.sum + delta, true
    if u.cnt == 0 then u.sum, u.old = 0, 0 end
  end
  if u.day == ARGV[7] and u.n > 0 then u.n, dirty = u.n - 1, true end
else
  return redis.error_reply('unknown settle action ' .. tostring(action))
end
if dirty then redis.call('HSET', K_USE, kid, use_s(u)) end
-- only freed capacity can make a waiting key available earlier
if delta < 0 or action == 'release' then
  local sc = tonumber(redis.call('ZSCORE', AVAIL, kid))
  if sc and sc > NOW then rescore(kid) end
end
return delta
