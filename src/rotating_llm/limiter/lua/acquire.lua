-- Select a key of the pool and reserve one request and `est` tokens on it, atomically.
-- ARGV[3] est tokens, ARGV[4] strategy (most_headroom|round_robin|weighted),
-- ARGV[5] random in [0,1) for weighted, ARGV[6] candidates to compare (>=1),
-- ARGV[7] comma-separated key ids not to pick (may be empty).
-- Candidates are the eligible keys (score <= now) in least-recently-used order.
-- Returns "<reservation_id> <day_start> <now> <key_id>" when granted (one string: the
-- cheapest reply to send and to parse), or
--         {0, retry_after_us (-1: never), now, key_id1, reason1, key_id2, reason2, ...} or
--         {-1} when the pool's config is missing (store flushed): register and call again.
local est_s = ARGV[3]
local est = tonumber(est_s)
local strategy = ARGV[4]
local want = tonumber(ARGV[6])
if strategy == 'round_robin' then want = 1 end
local excluded = nil
if ARGV[7] and ARGV[7] ~= '' then
  excluded = {}
  for kid in string.gmatch(ARGV[7], '[^,]+') do excluded[kid] = true end
end

local fitting = {}
local retry_at = INF
local deferred = {}
local reasons = {}
local writes = {}  -- summaries changed by trimming, written back in one HSET
local offset = 0
local size = want
local done = false
while not done do
  local page = redis.call('ZRANGEBYSCORE', AVAIL, '-inf', NOW_S, 'LIMIT', offset, size)
  if #page == 0 then
    if offset == 0 and redis.call('EXISTS', CFG) == 0 then return {-1} end
    break
  end
  offset = offset + #page
  size = 16
  local uses = redis.call('HMGET', K_USE, unpack(page))
  for i = 1, #page do
    local kid = page[i]
    local u, dirty, lim = nil, false, nil
    if not (excluded and excluded[kid]) then
      u, dirty = current(kid, uses[i])
      if not u.lim then  -- not copied yet: read the pool's config
        u.lim, dirty = redis.call('HGET', CFG, kid), true
      end
      lim = parse_limits(u.lim)
      if dirty then writes[#writes + 1] = kid; writes[#writes + 1] = u end
    end
    if not u then
      reasons[#reasons + 1] = kid
      reasons[#reasons + 1] = 'excluded'
    elseif lim then
      local at, why = fit_time(kid, lim, est, u.cnt, u.sum, u.today)
      if at <= NOW then
        fitting[#fitting + 1] = {kid, lim, u}
        if #fitting >= want then done = true; break end
      else
        if at < retry_at then retry_at = at end
        reasons[#reasons + 1] = kid
        reasons[#reasons + 1] = why
        -- a key that cannot take even the smallest request leaves the eligible set
        if fit_time(kid, lim, 1, u.cnt, u.sum, u.today) > NOW then
          deferred[#deferred + 1] = kid
        end
      end
    else
      deferred[#deferred + 1] = kid
    end
  end
end

-- headroom: the smallest share left of the key's RPM, TPM and RPD after this request
local function headroom(f)
  local lim, u = f[2], f[3]
  local head = 1 - u.cnt / lim.rpm
  local h2 = 1 - (u.sum + est) / lim.tpm
  if h2 < head then head = h2 end
  if lim.rpd > 0 then
    local h3 = 1 - u.today / lim.rpd
    if h3 < head then head = h3 end
  end
  return head
end

local pick = fitting[1]
if #fitting > 1 then
  if strategy == 'weighted' then
    local total = 0
    for _, f in ipairs(fitting) do total = total + f[2].weight end
    local x = tonumber(ARGV[5]) * total
    for _, f in ipairs(fitting) do
      x = x - f[2].weight
      if x < 0 then pick = f; break end
    end
  elseif strategy == 'most_headroom' then
    local best = headroom(pick)
    for i = 2, #fitting do
      local h = headroom(fitting[i])
      if h > best then pick, best = fitting[i], h end
    end
  end
end

local rs, kid, u, renew
if pick then
  kid, u = pick[1], pick[3]
  renew = u.cnt == 0 or u.day ~= DAY_S
  u.seq = u.seq + 1
  rs = string.format('%d', u.seq)
  if u.cnt == 0 then u.old = NOW end
  u.cnt, u.sum = u.cnt + 1, u.sum + est
  if u.day ~= DAY_S then u.day, u.n = DAY_S, 0 end
  u.n = u.n + 1
  u.today = u.n
  writes[#writes + 1] = kid
  writes[#writes + 1] = u
end

-- write every changed summary before any rescore reads one
if #writes > 0 then
  local args = {}
  for i = 1, #writes, 2 do
    args[#args + 1] = writes[i]
    args[#args + 1] = use_s(writes[i + 1])
  end
  redis.call('HSET', K_USE, unpack(args))
end
for _, d in ipairs(deferred) do rescore(d) end

if not pick then
  local nxt = redis.call('ZRANGEBYSCORE', AVAIL, '(' .. NOW_S, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #nxt > 0 and tonumber(nxt[2]) < retry_at then retry_at = tonumber(nxt[2]) end
  local out = {0, -1, NOW}
  if retry_at ~= INF then out[2] = retry_at - NOW end
  for _, v in ipairs(reasons) do out[#out + 1] = v end
  return out
end

local zk = BASE .. 'rpm:' .. kid
redis.call('ZADD', zk, NOW_S, rs .. ':' .. est_s)
if renew then redis.call('EXPIRE', zk, KEY_TTL) end
-- the key was eligible (no cooldown, not disabled): its new score follows from its usage
local at = fit_time(kid, pick[2], 1, u.cnt, u.sum, u.today)
if at == INF then at = NOW + 86400000000 end
redis.call('ZADD', AVAIL, score_s(at), kid)
return rs .. ' ' .. DAY_S .. ' ' .. NOW_S .. ' ' .. kid
