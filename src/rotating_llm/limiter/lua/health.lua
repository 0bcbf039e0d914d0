-- Change a key's health. ARGV[HEALTH_KEY_ID], ARGV[HEALTH_ACTION]:
--   'cooldown'  ARGV[HEALTH_SECONDS] (<= 0: growing backoff from HEALTH_BACKOFF_BASE_S
--               to HEALTH_BACKOFF_MAX_S), ARGV[HEALTH_REASON];
--   'daily'     cooldown until the next daily reset, ARGV[HEALTH_REASON];
--   'clear'     end the cooldown and reset the backoff;
--   'disable'   ARGV[HEALTH_REASON];  'enable'.
-- A key id '@<group>' (GROUP_MARK) names a quota group: 'cooldown', 'daily' and 'clear'
-- then apply to every member key at once (the backoff is the group's).
-- Every number passed is bounded by the client (seconds at most a day and a margin).
-- Returns the cooldown length in milliseconds (cooldown, daily) or 0.
local kid, action = ARGV[HEALTH_KEY_ID], ARGV[HEALTH_ACTION]
local targets = {kid}
local is_group = string.sub(kid, 1, #GROUP_MARK) == GROUP_MARK
if is_group then
  if action == 'disable' or action == 'enable' then
    return redis.error_reply('a quota group cannot be disabled; disable its keys')
  end
  targets = group_members(kid)
end
if action == 'cooldown' or action == 'daily' then
  local ms
  if action == 'daily' then
    days()
    if NEXT_RESET == INF then return redis.error_reply('no daily reset boundary after now') end
    ms = math.ceil((NEXT_RESET - NOW) / 1000)
  else
    ms = math.floor(tonumber(ARGV[HEALTH_SECONDS]) * 1000)
    if ms <= 0 then
      local level = redis.call('INCR', k_backoff(kid))
      local base, cap = tonumber(ARGV[HEALTH_BACKOFF_BASE_S]) * 1000,
                        tonumber(ARGV[HEALTH_BACKOFF_MAX_S]) * 1000
      ms = math.floor(math.min(base * 2 ^ (level - 1), cap))
      redis.call('PEXPIRE', k_backoff(kid), math.floor(cap * 4))
    end
  end
  if ms < 1 then ms = 1 end
  for _, t in ipairs(targets) do
    local cur = redis.call('PTTL', k_cool(t))
    if cur == nil or cur < ms then
      redis.call('SET', k_cool(t), ARGV[HEALTH_REASON], 'PX', ms)
    end
    if avail_score(t) then rescore(t) end
  end
  return ms
elseif action == 'clear' then
  redis.call('DEL', k_backoff(kid))
  for _, t in ipairs(targets) do redis.call('DEL', k_cool(t), k_backoff(t)) end
elseif action == 'disable' then
  redis.call('HSET', K_DISABLED, kid, ARGV[HEALTH_REASON])
  unlist(kid, limits(kid))
  return 0
elseif action == 'enable' then
  redis.call('HDEL', K_DISABLED, kid)
else
  return redis.error_reply('unknown health action ' .. tostring(action))
end
for _, t in ipairs(targets) do
  if redis.call('HEXISTS', CFG, t) == 1 then rescore(t) end
end
QU.wake()  -- a key back ('clear', 'enable'): the head of the pool's queue may go
return 0
