-- Register keys of the pool. ARGV[3] mode: 'replace' (these are all the pool's active keys)
-- or 'add' or 'remove'; then pairs key_id, "rpm tpm rpd weight" (for 'remove': key ids).
-- Counters and reservations are kept; only the pool's membership and limits change.
local mode = ARGV[3]
local seen = {}
if mode == 'remove' then
  for i = 4, #ARGV do
    redis.call('HDEL', CFG, ARGV[i])
    redis.call('ZREM', AVAIL, ARGV[i])
    redis.call('HDEL', K_DISABLED, ARGV[i])
  end
  return #ARGV - 3
end
for i = 4, #ARGV, 2 do
  local kid = ARGV[i]
  seen[kid] = true
  redis.call('HSET', CFG, kid, ARGV[i + 1])
end
if mode == 'replace' then
  for _, kid in ipairs(redis.call('HKEYS', CFG)) do
    if not seen[kid] then
      redis.call('HDEL', CFG, kid)
      redis.call('ZREM', AVAIL, kid)
    end
  end
end
for i = 4, #ARGV, 2 do  -- the summaries carry a copy of the limits
  local kid = ARGV[i]
  local u = current(kid, redis.call('HGET', K_USE, kid))
  u.lim = ARGV[i + 1]
  redis.call('HSET', K_USE, kid, use_s(u))
end
for kid, _ in pairs(seen) do
  rescore(kid)
end
return (#ARGV - 3) / 2
