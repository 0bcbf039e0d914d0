-- Settle a reservation. ARGV[3] key_id, ARGV[4] reservation id, ARGV[5] action:
--   'complete'  ARGV[6] = actual tokens: correct the reservation to the real usage, and
--               date it from now: the provider counted the request on arrival, which
--               was no later than this, so the slot frees a full window after that;
--   'release'   ARGV[6] = day_start of the reservation: the request never reached the
--               provider, so it no longer counts (request, tokens and today's count).
-- Returns the token delta applied (0 if the reservation already left the window).
local kid, resid, action = ARGV[3], ARGV[4], ARGV[5]
trim(kid)
local hk, zk = k_tpm(kid), k_rpm(kid)
local h = redis.call('HMGET', hk, resid, '_sum', '_day', '_n')
local old = tonumber(h[1])
local delta = 0
if action == 'complete' then
  if old then
    local actual = tonumber(ARGV[6])
    delta = actual - old
    redis.call('HSET', hk, resid, actual, '_sum', tonumber(h[2] or '0') + delta)
    redis.call('ZADD', zk, 'XX', 'GT', NOW, resid)
  end
elseif action == 'release' then
  if redis.call('ZREM', zk, resid) == 1 then
    delta = -(old or 0)
    redis.call('HDEL', hk, resid)
    redis.call('HSET', hk, '_sum', tonumber(h[2] or '0') + delta)
  end
  if h[3] and tonumber(h[3]) == tonumber(ARGV[6]) and tonumber(h[4] or '0') > 0 then
    redis.call('HINCRBY', hk, '_n', -1)
  end
else
  return redis.error_reply('unknown settle action ' .. tostring(action))
end
-- only freed capacity can make a waiting key available earlier
if delta < 0 or action == 'release' then
  local sc = tonumber(redis.call('ZSCORE', AVAIL, kid))
  if sc and sc > NOW then rescore(kid) end
end
return delta
