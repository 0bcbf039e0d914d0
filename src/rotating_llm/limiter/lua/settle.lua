-- Settle a reservation. ARGV[3] key_id, ARGV[4] reservation id, ARGV[5] action:
--   'complete'  ARGV[6] = actual tokens: correct the reservation to the real usage, and
--               date it from now: the provider counted the request on arrival, which
--               was no later than this, so the slot frees a full window after that;
--   'release'   ARGV[6] = day_start of the reservation: the request never reached the
--               provider, so it no longer counts (request, tokens and today's count).
-- Returns the token delta applied (0 if the reservation already left the window).
local kid, resid, action = ARGV[3], ARGV[4], ARGV[5]
trim(kid)
local hk = k_tpm(kid)
local old = redis.call('HGET', hk, resid)
local delta = 0
if action == 'complete' then
  if old then
    local actual = tonumber(ARGV[6])
    delta = actual - tonumber(old)
    redis.call('HSET', hk, resid, actual)
    if delta ~= 0 then redis.call('HINCRBY', hk, '_sum', delta) end
    local zk = k_rpm(kid)
    local at = tonumber(redis.call('ZSCORE', zk, resid))
    if at and at < NOW then redis.call('ZADD', zk, NOW, resid) end
  end
elseif action == 'release' then
  if redis.call('ZREM', k_rpm(kid), resid) == 1 then
    delta = -tonumber(old or '0')
    redis.call('HDEL', hk, resid)
    if delta ~= 0 then redis.call('HINCRBY', hk, '_sum', delta) end
  end
  local rk = k_rpd(kid)
  local d = redis.call('HMGET', rk, 'day', 'n')
  if d[1] and tonumber(d[1]) == tonumber(ARGV[6]) and tonumber(d[2] or '0') > 0 then
    redis.call('HINCRBY', rk, 'n', -1)
  end
else
  return redis.error_reply('unknown settle action ' .. tostring(action))
end
if redis.call('ZSCORE', AVAIL, kid) then rescore(kid, false) end
return delta
