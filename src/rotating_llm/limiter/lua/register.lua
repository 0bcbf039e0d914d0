-- Register keys of the pool. ARGV[REGISTER_MODE]: 'replace' (these are all the pool's
-- active keys and groups), 'add' or 'remove'; then pairs key_id, "rpm tpm rpd tpd weight
-- group[ tier]" (LIMITS of the schema; for 'remove': key ids), and for each quota group
-- first a pair '@<group>' (GROUP_MARK), "rpm tpm rpd tpd 0 -|<member,key,ids>|<tiers>"
-- (the members' tiers ascending, '' if all 0). The pool's tiers go to TIERS_FIELD of its
-- config (with 'add': joined to those there; 'remove' leaves them). Counters
-- and reservations are kept; only the pool's membership and limits change (a key whose
-- tier changed leaves its old tier's availability set). Learned limits (learn.lua) that
-- have not expired apply over the file's (expired ones are dropped). Returns {keys
-- registered, microseconds until the first learned limit expires (-1: none)}; the head
-- of the pool's queue is signalled (a learned limit expired, keys added: room may grow).
local mode = ARGV[REGISTER_MODE]
local first = REGISTER_MODE + 1
local seen, gseen, tiers = {}, {}, {}
if mode == 'remove' then
  for i = first, #ARGV do
    unlist(ARGV[i], limits(ARGV[i]))
    redis.call('HDEL', CFG, ARGV[i])
    redis.call('HDEL', K_DISABLED, ARGV[i])
  end
  return #ARGV - first + 1
end
local nkeys = 0
local learned = redis.call('EXISTS', BASE .. 'learned') == 1
local first_exp = INF
local lims = {}
local function apply(id, file_s)
  if not learned then return file_s end
  local eff, exp = effective(id, file_s)
  if exp < first_exp then first_exp = exp end
  return eff
end
for i = first, #ARGV, 2 do
  local id = ARGV[i]
  if string.sub(id, 1, #GROUP_MARK) == GROUP_MARK then
    local lim, members, gt = string.match(ARGV[i + 1], '^([^|]*)|([^|]*)|?(.*)$')
    lim = apply(id, lim)
    gseen[id] = lim
    redis.call('HSET', K_GROUPS, id, lim, id .. ':k', members)
    if gt ~= '' then redis.call('HSET', K_GROUPS, id .. ':t', gt)
    else redis.call('HDEL', K_GROUPS, id .. ':t') end
  else
    seen[id] = true
    nkeys = nkeys + 1
    local old, new = limits(id), parse_limits(ARGV[i + 1])
    if new then tiers[new.tier] = true end
    if old and new and old.tier ~= new.tier then unlist(id, old) end
    lims[id] = apply(id, ARGV[i + 1])
    redis.call('HSET', CFG, id, lims[id])
  end
end
if learned then  -- keys put into the learned group (learn.lua) keep it
  local members = {}
  for kid, lim in pairs(lims) do
    if string.match(lim, '^%S+ %S+ %S+ %S+ %S+ (%S+)') == LEARNED_GROUP then
      members[#members + 1] = kid
    end
  end
  if #members > 0 then
    local glim = apply(LEARNED_GROUP, '0 0 0 0 0 -')
    gseen[LEARNED_GROUP] = glim
    redis.call('HSET', K_GROUPS, LEARNED_GROUP, glim, LEARNED_GROUP .. ':k',
               table.concat(members, ','))
  end
end
if mode == 'replace' then
  for _, kid in ipairs(key_ids()) do
    if not seen[kid] then
      unlist(kid, limits(kid))
      redis.call('HDEL', CFG, kid)
    end
  end
  for _, f in ipairs(redis.call('HKEYS', K_GROUPS)) do
    local g = string.match(f, '^(.-):[kt]$') or f
    if not gseen[g] then redis.call('HDEL', K_GROUPS, f) end
  end
end
if mode == 'add' then
  for t in string.gmatch(redis.call('HGET', CFG, TIERS_FIELD) or '', '%d+') do
    tiers[tonumber(t)] = true
  end
end
local tl = {}
for t, _ in pairs(tiers) do tl[#tl + 1] = t end
table.sort(tl)
if #tl == 0 or (#tl == 1 and tl[1] == 0) then redis.call('HDEL', CFG, TIERS_FIELD)
else redis.call('HSET', CFG, TIERS_FIELD, table.concat(tl, ',')) end
for g, lim in pairs(gseen) do  -- a group's summary carries a copy of its limits
  local u = usage(g)
  u.lim = lim
  redis.call('HSET', K_USE, unpack(use_args(g, u)))
  redis.call('HDEL', K_USE, g .. ':b')
end
for i = first, #ARGV, 2 do  -- the summaries carry a copy of the limits
  local kid = ARGV[i]
  if seen[kid] then
    local u = usage(kid)
    u.lim = lims[kid]
    redis.call('HSET', K_USE, unpack(use_args(kid, u)))
  end
end
for kid, _ in pairs(seen) do
  rescore(kid)
end
QU.wake()  -- limits may have grown (a learned one expired, keys added): the head may go
if first_exp == INF then return {nkeys, -1} end
return {nkeys, first_exp - NOW}
