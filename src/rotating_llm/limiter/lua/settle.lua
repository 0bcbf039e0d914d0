-- Settle a reservation. ARGV[3] key_id, ARGV[4] reservation id, ARGV[5] action:
--   'complete'  ARGV[6] = actual tokens: correct the reservation to the real usage, and
--               date it from now: the provider counted the request on arrival, which
--               was no later than this, so the slot frees a full window after that;
--   'release'   ARGV[6] = day_start of the reservation: the request never reached the
--               provider, so it no longer counts (request, tokens and today's count).
-- Returns the token delta applied (0 if the reservation already left the window).
local kid, resid, action = ARGV[3], ARGV[4], ARGV[5]
local zk, hk = k_rpm(kid), k_tpm(kid)
local u, dirty = current(zk, hk, redis.call('HGET', K_USE, kid))
local old = tonumber(redis.call('HGET', hk, resid))  -- nil once it left the window
local delta = 0
if action == 'complete' then
  if old then
    delta = tonumber(ARGV[6]) - old
    if delta ~= 0 then
      redis.call('HSET', hk, resid, ARGV[6])
      u.sum, dirty = u.sum + delta, true
    end
    redis.call('ZADD', zk, 'XX', 'GT', NOW_S, resid)
  end
elseif action == 'release' then
  if redis.call('ZREM', zk, resid) == 1 then
    delta = -(old or 0)
    redis.call('HDEL', hk, resid)
    u.cnt, u.sum, dirty = u.cnt - 1, u.sum + delta, true
    if u.cnt == 0 then u.sum, u.old = 0, 0 end
  end
  if u.day == ARGV[6] and u.n > 0 then u.n, dirty = u.n - 1, true end
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
