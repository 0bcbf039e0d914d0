-- Select a key of the pool and reserve one request and `est` tokens on it, atomically.
-- ARGV[3] est tokens, ARGV[4] strategy (most_headroom|round_robin|weighted),
-- ARGV[5] random in [0,1) for weighted, ARGV[6] candidates to compare (>=1),
-- ARGV[7] comma-separated key ids not to pick (may be empty).
-- Candidates are the eligible keys (score <= now) in least-recently-used order.
-- Returns {1, key_id, reservation_id, day_start, now} or
--         {0, retry_after_us (-1: never), now, key_id1, reason1, key_id2, reason2, ...} or
--         {-1} when the pool's config is missing (store flushed): register and call again.
local est = tonumber(ARGV[3])
local strategy = ARGV[4]
local rnd = tonumber(ARGV[5])
local want = tonumber(ARGV[6])
if strategy == 'round_robin' then want = 1 end
local excluded = {}
for kid in string.gmatch(ARGV[7] or '', '[^,]+') do excluded[kid] = true end

local fitting = {}
local retry_at = INF
local deferred = {}
local reasons = {}
local offset = 0
local done = false
while not done do
  local page = redis.call('ZRANGEBYSCORE', AVAIL, '-inf', NOW, 'LIMIT', offset, 16)
  if #page == 0 then
    if offset == 0 and redis.call('EXISTS', CFG) == 0 then return {-1} end
    break
  end
  offset = offset + #page
  local cfgs = redis.call('HMGET', CFG, unpack(page))
  for i, kid in ipairs(page) do
    local lim = parse_limits(cfgs[i])
    if excluded[kid] then
      reasons[#reasons + 1] = kid
      reasons[#reasons + 1] = 'excluded'
    elseif lim then
      trim(kid)
      local count, tsum, today = usage(kid)
      local at, why = fit_time(kid, lim, est, count, tsum, today)
      if at <= NOW then
        local head = 1 - count / lim.rpm
        local h2 = 1 - (tsum + est) / lim.tpm
        if h2 < head then head = h2 end
        if lim.rpd > 0 then
          local h3 = 1 - today / lim.rpd
          if h3 < head then head = h3 end
        end
        fitting[#fitting + 1] = {kid = kid, head = head, weight = lim.weight, lim = lim,
                                 count = count, tsum = tsum, today = today}
        if #fitting >= want then done = true; break end
      else
        if at < retry_at then retry_at = at end
        reasons[#reasons + 1] = kid
        reasons[#reasons + 1] = why
        -- a key that cannot take even the smallest request leaves the eligible set
        if fit_time(kid, lim, 1, count, tsum, today) > NOW then deferred[#deferred + 1] = kid end
      end
    else
      deferred[#deferred + 1] = kid
    end
  end
end

for _, kid in ipairs(deferred) do rescore(kid) end

if #fitting == 0 then
  local nxt = redis.call('ZRANGEBYSCORE', AVAIL, '(' .. NOW, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #nxt > 0 and tonumber(nxt[2]) < retry_at then retry_at = tonumber(nxt[2]) end
  local out = {0, -1, NOW}
  if retry_at ~= INF then out[2] = retry_at - NOW end
  for _, v in ipairs(reasons) do out[#out + 1] = v end
  return out
end

local pick = fitting[1]
if strategy == 'weighted' then
  local total = 0
  for _, f in ipairs(fitting) do total = total + f.weight end
  local x = rnd * total
  for _, f in ipairs(fitting) do
    x = x - f.weight
    if x < 0 then pick = f; break end
  end
elseif strategy == 'most_headroom' then
  for _, f in ipairs(fitting) do
    if f.head > pick.head then pick = f end
  end
end

local kid = pick.kid
local resid = redis.call('INCR', K_SEQ)
local zk, hk = k_rpm(kid), k_tpm(kid)
redis.call('ZADD', zk, NOW, resid)
redis.call('HSET', hk, resid, est, '_sum', pick.tsum + est, '_day', DAY_START, '_n', pick.today + 1)
redis.call('EXPIRE', zk, KEY_TTL)
redis.call('EXPIRE', hk, KEY_TTL)
-- the key was eligible (no cooldown, not disabled): its new score follows from its usage
local at = fit_time(kid, pick.lim, 1, pick.count + 1, pick.tsum + est, pick.today + 1)
if at == INF then at = NOW + 86400000000 end
redis.call('ZADD', AVAIL, at, kid)
return {1, kid, resid, DAY_START, NOW}
