-- Register keys of the pool. ARGV[REGISTER_MODE]: 'replace' (these are all the pool's
-- active keys), 'add' or 'remove'; then pairs key_id, "rpm tpm rpd tpd weight" (LIMITS of
-- the schema; for 'remove': key ids). Counters and reservations are kept; only the
-- pool's membership and limits change.
local mode = ARGV[REGISTER_MODE]
local first = REGISTER_MODE + 1
local seen = {}
if mode == 'remove' then
  for i = first, #ARGV do
    redis.call('HDEL', CFG, ARGV[i])
    redis.call('ZREM', AVAIL, ARGV[i])
    redis.call('HDEL', K_DISABLED, ARGV[i])
  end
  return #ARGV - first + 1
end
for i = first, #ARGV, 2 do
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
for i = first, #ARGV, 2 do  -- the summaries carry a copy of the limits
  local kid = ARGV[i]
  local u = usage(kid)
  u.lim = ARGV[i + 1]
  redis.call('HSET', K_USE, unpack(use_args(kid, u)))
end
for kid, _ in pairs(seen) do
  rescore(kid)
end
return (#ARGV - first + 1) / 2
