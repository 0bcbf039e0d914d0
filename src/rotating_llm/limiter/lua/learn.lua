-- What a provider said about the limits of a key or a quota group. ARGV[LEARN_ACTION]:
--   'learn'   ARGV[LEARN_TARGET] a key id or '@<group>', ARGV[LEARN_FILE] its limits as
--             the file gives them ("rpm tpm rpd tpd weight group"), ARGV[LEARN_TTL_US]
--             how long a learned limit holds, then groups of four: kind (rpm|tpm|rpd|
--             tpd), how, value, extra. how:
--               'lower'  a 429 named this limit: learned = value (never above a limit
--                        learned before, extra = source);
--               'share'  (a key of no group) a 429 named the provider project's limit,
--                        which the key may share with keys the pool does not know to be
--                        in its project: the key joins the pool's learned group
--                        LEARNED_GROUP (record LEARNED_GROUP_KIND:<key id>), whose limit
--                        is the value (never raised by a 429), bringing its reservations
--                        in the window along (extra = source);
--               'adopt'  a header stated the limit: learned = value when below the
--                        file's (else the file's holds); 'raise': also above it;
--               'used'   (rpm|tpm) the provider counts `value` used now: what the pool
--                        holds less than that is held as reserved until the provider's
--                        reset in `extra` microseconds (at most a window; at most
--                        MAX_HOLD requests per call).
--             Returns microseconds until the first of the target's learned limits
--             expires (-1: none).
--   'read'    now (us), then every learned record of the pool: field, record pairs.
--   'forget'  drop every learned limit of the pool (register again afterwards).
-- Every number is bounded by the client: values and counts at most 10**12, the TTL at
-- most a week, resets at most a day.
local MAX_HOLD = 1000
local action = ARGV[LEARN_ACTION]
local KL = BASE .. 'learned'
if action == 'forget' then return redis.call('DEL', KL) end
if action == 'read' then  -- Redis's now first, then field, record pairs
  local r = redis.call('HGETALL', KL)
  table.insert(r, 1, NOW_S)
  return r
end

local id, file_s = ARGV[LEARN_TARGET], ARGV[LEARN_FILE]
local is_group = string.sub(id, 1, #GROUP_MARK) == GROUP_MARK
local u
if is_group then u = group_usage(id) else u = usage(id) end
local fa, fb, fd, ft = string.match(file_s, '^(%S+) (%S+) (%S+) (%S+) ')
local file = {rpm = tonumber(fa), tpm = tonumber(fb), rpd = tonumber(fd), tpd = tonumber(ft)}
local exp_s = int_s(NOW + tonumber(ARGV[LEARN_TTL_US]))
local held = {rpm = u.cnt, tpm = u.sum}
local changed, holds, joins = false, {}, nil
for i = LEARN_TTL_US + 1, #ARGV - 3, 4 do
  local kind, how, v, extra = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if how == 'used' then
    local extra_used = v - (held[kind] or v)
    if extra_used > 0 then holds[kind] = {extra_used, tonumber(extra)} end
  else
    local field = kind .. ':' .. id
    local old = redis.call('HGET', KL, field)
    local ov, oflag
    if old then
      local a, e, f = string.match(old, '^(%d+) %d+ (%d+) (%S)')
      if tonumber(e) > NOW then ov, oflag = tonumber(a), f end
    end
    if how == 'lower' and ov and ov < v then v = ov end
    local f = file[kind]
    local flag = '-'
    if how == 'raise' then flag = 'r' end
    if how == 'share' then  -- the learned group learns it (join, below)
      joins = joins or {}
      joins[#joins + 1] = {kind, v, extra}
    elseif how == 'adopt' and f > 0 and v >= f then  -- the file's limit holds
      if old then redis.call('HDEL', KL, field); changed = true end
    else
      if v ~= ov or flag ~= oflag then changed = true end
      redis.call('HSET', KL, field, int_s(v) .. ' ' .. NOW_S .. ' ' .. exp_s .. ' ' .. flag
                 .. ' ' .. extra)
    end
  end
end

-- The key joins the learned group: it counts with the group from now on, and so do its
-- reservations in the window; the group learns each limit (never raised by a 429).
local function join(g)
  local rec = redis.call('HGET', KL, LEARNED_GROUP_KIND .. ':' .. id)
  redis.call('HSET', KL, LEARNED_GROUP_KIND .. ':' .. id, g .. ' ' .. NOW_S .. ' ' .. exp_s .. ' - ' .. joins[1][3])
  for _, j in ipairs(joins) do
    local field = j[1] .. ':' .. g
    local v, old = j[2], redis.call('HGET', KL, field)
    local ov = old and tonumber(string.match(old, '^(%d+)'))
    if ov and ov < v then v = ov end
    redis.call('HSET', KL, field, int_s(v) .. ' ' .. NOW_S .. ' ' .. exp_s .. ' - ' .. j[3])
  end
  local gu = group_usage(g)
  local members = group_members(g)
  local listed = false
  for _, m in ipairs(members) do if m == id then listed = true end end
  if not listed and not rec then
    members[#members + 1] = id
    local held = redis.call('ZRANGE', k_rpm(id), 0, -1, 'WITHSCORES')
    local args = {}
    for i = 1, #held, 2 do
      local rid, tok = string.match(held[i], '^(.-):(%d+)$')
      args[#args + 1] = held[i + 1]
      args[#args + 1] = rid .. '@' .. id .. ':' .. tok
      local at = tonumber(held[i + 1])
      if gu.cnt == 0 or at < gu.old then gu.old = at end
      gu.cnt, gu.sum = gu.cnt + 1, gu.sum + tonumber(tok)
    end
    if #args > 0 then
      redis.call('ZADD', k_rpm(g), unpack(args))
      redis.call('EXPIRE', k_rpm(g), KEY_TTL_S)
    end
  end
  local glim = effective(g, '0 0 0 0 0 -')
  redis.call('HSET', K_GROUPS, g, glim, g .. ':k', table.concat(members, ','))
  gu.lim = glim
  redis.call('HSET', K_USE, unpack(use_args(g, gu)))
  changed = true
end
if joins then join(LEARNED_GROUP) end

local lim_s, first = effective(id, file_s)
if changed then
  if is_group then redis.call('HSET', K_GROUPS, id, lim_s) else redis.call('HSET', CFG, id, lim_s) end
  u.lim = lim_s
end

-- Hold what someone else used: members "h<seq>.<n>:<tokens>" (in a group's window
-- "h<seq>.<n>@-:<tokens>") dated so that they leave the window at the provider's reset.
local function hold(n, tokens, reset_us)
  if reset_us > WINDOW then reset_us = WINDOW end
  if reset_us <= 0 then return end
  if n < 1 then n = 1 end
  if n > MAX_HOLD then n = MAX_HOLD end
  local at_s = int_s(NOW - WINDOW + reset_us)
  u.seq = u.seq + 1
  local tag, args = 'h' .. int_s(u.seq) .. '.', {}
  local suffix = ':'
  if is_group then suffix = '@-:' end
  for j = 1, n do
    args[#args + 1] = at_s
    args[#args + 1] = tag .. j .. suffix .. ((j == 1) and int_s(tokens) or '0')
  end
  local zk = k_rpm(id)
  redis.call('ZADD', zk, unpack(args))
  redis.call('EXPIRE', zk, KEY_TTL_S)
  local at = tonumber(at_s)
  if u.cnt == 0 or at < u.old then u.old = at end
  u.cnt, u.sum = u.cnt + n, u.sum + tokens
end
local hr, ht = holds.rpm, holds.tpm
if hr and ht and hr[2] == ht[2] then
  hold(hr[1], ht[1], hr[2])
else
  if hr then hold(hr[1], 0, hr[2]) end
  if ht then hold(0, ht[1], ht[2]) end
end

if changed or hr or ht then
  redis.call('HSET', K_USE, unpack(use_args(id, u)))
  if is_group then
    local glim = parse_limits(u.lim)
    local gat = glim and fit_time(id, glim, 1, u) or NOW
    if gat > NOW then
      group_full(id, gat)
    else
      redis.call('HSET', K_USE, id .. ':b', '1')
      group_freed(id)
    end
  else
    rescore(id)
    if joins then
      local gu, glim = group_usage(LEARNED_GROUP)
      local gat = glim and fit_time(LEARNED_GROUP, glim, 1, gu) or NOW
      if gat > NOW then group_full(LEARNED_GROUP, gat) end
    end
  end
end
if first == INF then return -1 end
return first - NOW
