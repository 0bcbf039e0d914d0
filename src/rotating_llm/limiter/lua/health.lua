-- Change a key's health. ARGV[3] key_id, ARGV[4] action:
--   'cooldown'  ARGV[5] seconds (<= 0: growing backoff from ARGV[7]/ARGV[8]), ARGV[6] reason;
--   'daily'     cooldown until the next daily reset, ARGV[6] reason;
--   'clear'     end the cooldown and reset the backoff;
--   'disable'   ARGV[6] reason;  'enable'.
-- Returns the cooldown length in milliseconds (cooldown, daily) or 0.
local kid, action = ARGV[3], ARGV[4]
if action == 'cooldown' or action == 'daily' then
  local ms
  if action == 'daily' then
    days()
    if NEXT_RESET == INF then return redis.error_reply('no daily reset boundary after now') end
    ms = math.ceil((NEXT_RESET - NOW) / 1000)
  else
    ms = math.floor(tonumber(ARGV[5]) * 1000)
    if ms <= 0 then
      local level = redis.call('INCR', k_backoff(kid))
      local base, cap = tonumber(ARGV[7]) * 1000, tonumber(ARGV[8]) * 1000
      ms = math.floor(math.min(base * 2 ^ (level - 1), cap))
      redis.call('PEXPIRE', k_backoff(kid), math.floor(cap * 4))
    end
  end
  if ms < 1 then ms = 1 end
  local cur = redis.call('PTTL', k_cool(kid))
  if cur == nil or cur < ms then
    redis.call('SET', k_cool(kid), ARGV[6], 'PX', ms)
  end
  if redis.call('ZSCORE', AVAIL, kid) then rescore(kid) end
  return ms
elseif action == 'clear' then
  redis.call('DEL', k_cool(kid), k_backoff(kid))
elseif action == 'disable' then
  redis.call('HSET', K_DISABLED, kid, ARGV[6])
  redis.call('ZREM', AVAIL, kid)
  return 0
elseif action == 'enable' then
  redis.call('HDEL', K_DISABLED, kid)
else
  return redis.error_reply('unknown health action ' .. tostring(action))
end
if redis.call('HEXISTS', CFG, kid) == 1 then
  rescore(kid)
end
return 0
