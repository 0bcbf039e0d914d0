-- Select a key of the pool and reserve one request and `est` tokens on it, atomically.
-- ARGV[ACQUIRE_EST] tokens, ARGV[ACQUIRE_STRATEGY] most_headroom|round_robin|weighted,
-- ARGV[ACQUIRE_RANDOM] in [0,1) for weighted, ARGV[ACQUIRE_CANDIDATES] keys to compare
-- (>= 1), ARGV[ACQUIRE_EXCLUDE] comma-separated key ids not to pick (may be empty).
-- ARGV[ACQUIRE_REQUEST_ID] names this acquire attempt: a resent acquire (same id, e.g.
-- after a socket timeout while the first copy ran) gets the first one's grant back
-- instead of a second reservation. The grant is kept under req:<id> for REQ_TTL_MS.
-- Candidates are the eligible keys (score <= now) in least-recently-used order. A key of
-- a quota group fits only if the group fits too; both are reserved in this call.
-- Tiers: the pool's tiers ascending ("0,1,3"; absent: only tier 0) are in its config
-- (TIERS_FIELD, written by register, so every process sees every tier). The eligible keys
-- of one tier are in that tier's availability set; a tier is looked at only when no key
-- of every lower tier fits, so a decision reads only a few candidates.
-- Affinity: ARGV[ACQUIRE_AFFINITY] a digest naming a conversation ('' none); the key that
-- last served it (aff:<digest>) is chosen if it fits and no lower tier has room, else the
-- strategy decides; either way aff:<digest> names the key granted, for
-- ARGV[ACQUIRE_AFFINITY_TTL_MS].
-- Queue: ARGV[ACQUIRE_PRIORITY] (-MAX_PRIORITY..MAX_PRIORITY, higher first),
-- ARGV[ACQUIRE_TENANT] (a digest, '-' none), ARGV[ACQUIRE_TICKET] (the caller's ticket
-- id, '' none), ARGV[ACQUIRE_TICKET_MS] (how long a ticket taken or kept by this call
-- lives; 0: the caller will not wait, so it takes none). While anyone waits, only the
-- head ticket, or a caller whose ticket would come before the head, may be granted;
-- a caller refused takes (or renews) its ticket in this call. Ticket order: priority
-- (higher first), then round (round robin over tenants: a tenant's next ticket is one
-- round after both its last ticket still queued and its last turn, never before the
-- round last served; a grant without a ticket while tickets of its priority wait is a
-- turn too), then arrival. A caller behind the head takes only room the head cannot
-- use; refused, it gets its position and the expected wait (position times the pace at
-- which queued tickets were served). A ticket holder granted leaves the queue and the
-- next head is signalled (PUBLISH on channel q).
-- Returns the GRANT fields as one string (the cheapest reply to send and to parse;
-- affinity '-' none asked, '1' held, '0' not; tenant the capped tenant's digest or '-'),
-- or the REFUSAL array followed by key id / reason pairs (TENANT.REASON alone when the
-- tenant's cap refused); code -1 when the pool's config is missing (store flushed): register and
-- call again.
local req_key = BASE .. 'req:' .. ARGV[ACQUIRE_REQUEST_ID]
local Q = BASE .. 'q'
-- one EXISTS for both (most often neither exists)
local seen = redis.call('EXISTS', req_key, Q) > 0
if seen then
  local granted = redis.call('GET', req_key)
  if granted then return granted end
end
-- the caller's ticket: id, member, class, score; whether it stands behind the head (hx:
-- the head's exclusions, hest its estimate, n the tickets ahead of the caller, room
-- whether a key this caller could not use had room for someone else)
local qs = {tk = ARGV[ACQUIRE_TICKET], m = nil, c = nil, sc = nil, blocked = false}
if seen and redis.call('EXISTS', Q) == 1 then  -- (all the queue costs while nobody waits)
  local hm, hs, ht = QU.head()
  if hm then
    if qs.tk ~= '' then
      local rec = redis.call('HGET', BASE .. 'qt', qs.tk)
      if rec then
        local _e, m, c = QU.ticket(rec)
        local sc = m == hm and hs or tonumber(redis.call('ZSCORE', Q, m))
        if sc then qs.m, qs.c, qs.sc = m, c, sc end
      end
    end
    if qs.m then
      qs.blocked = qs.m ~= hm
    else  -- a newcomer: where a ticket of it would stand (pc, pr: its class and round)
      qs.pc, qs.pr, qs.sc = QU.place(ARGV[ACQUIRE_PRIORITY], ARGV[ACQUIRE_TENANT])
      qs.blocked = qs.sc >= hs
    end
    if qs.blocked then  -- what the head asks for: only capacity it can use is held for it
      local _e, _m, _c, hest, hx = QU.ticket(redis.call('HGET', BASE .. 'qt', ht))
      qs.hest, qs.hx, qs.ht = hest, {}, ht
      for k in string.gmatch(hx, '[^,]+') do qs.hx[k] = true end
      -- times callers passed this head on a key it did not fit; from QU.PASSES on, every
      -- key it did not exclude is held for it (a large request is not starved)
      local pt, pn = string.match(redis.call('HGET', BASE .. 'qr', '~pass') or '', '^(%S+) (%d+)$')
      qs.pn = pt == ht and tonumber(pn) or 0
      qs.starved = qs.pn >= QU.PASSES
      if qs.m then  -- (a newcomer would arrive after every ticket of its score)
        qs.n = redis.call('ZRANK', Q, qs.m)
      else
        qs.n = redis.call('ZCOUNT', Q, '-inf', int_s(qs.sc))
      end
      qs.why = 'queued behind ' .. qs.n
    end
  end
end

-- A refusal (capacity returns in `retry_us`, -1 never): the caller takes or keeps its
-- ticket if it may wait (its record keeps its estimate and exclusions, which only the
-- head's are read for); the REFUSAL array with its position and expected wait. A
-- queued caller refused while a key it could not use had room signals the ticket after
-- it: capacity the head cannot use goes to whoever behind it can. A caller that found
-- room held for the head signals the head (room may come back unannounced: a learned
-- limit expired, limits raised, a key added).
local function refuse(retry_us)
  local pos, wait = -1, -1
  if qs.held then redis.call('PUBLISH', Q, qs.ht) end
  local tms = tonumber(ARGV[ACQUIRE_TICKET_MS])
  if tms > 0 and qs.tk ~= '' and (retry_us >= 0 or qs.m) then
    local exp = NOW + tms * 1000
    local ex = ARGV[ACQUIRE_EXCLUDE]
    local tail = ARGV[ACQUIRE_EST] .. ' ' .. (ex == '' and '-' or ex)
    if qs.m then
      redis.call('HSET', BASE .. 'qt', qs.tk, int_s(exp) .. ' ' .. qs.m .. ' ' .. qs.c .. ' ' .. tail)
    else
      if not qs.pc then
        qs.pc, qs.pr, qs.sc = QU.place(ARGV[ACQUIRE_PRIORITY], ARGV[ACQUIRE_TENANT])
      end
      qs.m, qs.c = QU.add(qs.tk, qs.pc, qs.pr, qs.sc, exp, tail), qs.pc
    end
    QU.expire()
    pos = redis.call('ZRANK', Q, qs.m)
    if qs.room then
      local nx = redis.call('ZRANGE', Q, pos + 1, pos + 1)
      if #nx > 0 then redis.call('PUBLISH', Q, string.sub(nx[1], 13)) end
    end
  elseif qs.blocked then  -- where it would stand
    pos = qs.n
  end
  if pos == 0 then
    wait = retry_us
  elseif pos > 0 then
    local gap = tonumber(redis.call('HGET', BASE .. 'qr', '~gap'))
    if gap and retry_us >= 0 then wait = retry_us + pos * gap end
  end
  return {0, retry_us, NOW, pos, wait}
end

local est_s = ARGV[ACQUIRE_EST]
local est = tonumber(est_s)
-- A capped tenant (ARGV[ACQUIRE_TENANT_CAP] its cap "rpm tpm 0 0 1 -", '' none; counted
-- under ARGV[ACQUIRE_TENANT], its digest): refused here, before any key is looked at,
-- while its own window is full. Such a refusal takes no ticket and gives up the one the
-- caller held (the next head is signalled): a tenant at its cap never holds the queue.
local tn = nil  -- the capped tenant: {id, usage}
if ARGV[ACQUIRE_TENANT_CAP] ~= '' then
  tn = {TENANT.MARK .. ARGV[ACQUIRE_TENANT]}
  local u, ok, at, why = TENANT.fit(tn[1], ARGV[ACQUIRE_TENANT_CAP], est)
  tn[2] = u
  if not ok then
    if qs.m then
      local first = redis.call('ZRANK', Q, qs.m) == 0
      QU.remove(qs.tk, qs.m, qs.c, qs.sc)
      local _m, _s, nt = QU.head()
      if first and nt then redis.call('PUBLISH', Q, nt) end
    end
    return {0, at == INF and -1 or at - NOW, NOW, -1, -1, TENANT.REASON, 'tenant ' .. why}
  end
end
local strategy = ARGV[ACQUIRE_STRATEGY]
local want_s = ARGV[ACQUIRE_CANDIDATES]
if strategy == 'round_robin' then want_s = '1' end
local want = tonumber(want_s)
local excluded = nil
local ex = ARGV[ACQUIRE_EXCLUDE]
if ex ~= '' then
  excluded = {}
  for kid in string.gmatch(ex, '[^,]+') do excluded[kid] = true end
end

local nfit = 0  -- candidates that fit: F_KID, F_LIM, F_U [1..nfit]
local GS = nil  -- groups read by this call: @<group> -> {usage, limits, fits est}
local retry_at = INF
local deferred = nil
local reasons = nil
local nw = 0  -- HSET arguments of summaries changed, in WRITES [1..nw]
local slot = 0
local listed = 0  -- eligible keys listed, in every set looked at

-- Candidate kid (summary s, token count tok, listed as eligible): whether it fits now,
-- its limits and usage (nil if not in the pool). Records why not, and what to write.
local function consider(kid, s, tok)
  slot = slot + 1
  local u = current(kid, s, tok, slot)
  local dirty = not s
  if not u.lim then  -- not copied yet: read the pool's config
    u.lim, dirty = redis.call('HGET', CFG, kid), true
  end
  local lim = parse_limits(u.lim)
  if not lim then
    deferred = deferred or {}
    deferred[#deferred + 1] = kid
    return false
  end
  local ok = fits(lim, est, u)
  if u.cnt > 0 and u.old <= (ok and STALE or CUTOFF) then
    -- out-of-window members: trimmed when they decide, or when long past due
    trim(u, kid)
    dirty = true
    if not ok then ok = fits(lim, est, u) end
  end
  if dirty then nw = put_use(WRITES, nw, kid, u) end
  local g = lim.group
  if ok and g then
    local gs = GS and GS[g]
    if not gs then
      local gu, glim, gdirty = group_read(g)
      local gok = true
      if glim then
        gok = fits(glim, est, gu)
        if gu.cnt > 0 and gu.old <= (gok and STALE or CUTOFF) then
          trim(gu, g)
          gdirty = true
          if not gok then gok = fits(glim, est, gu) end
        end
        if gdirty then nw = put_use(WRITES, nw, g, gu) end
      end
      gs = {gu, glim, gok}
      GS = GS or {}
      GS[g] = gs
    end
    if not gs[3] then
      ok = false
      local at, why = fit_time(g, gs[2], est, gs[1])
      if at < retry_at then retry_at = at end
      reasons = reasons or {}
      reasons[#reasons + 1] = kid
      reasons[#reasons + 1] = 'group ' .. why
      if fit_time(g, gs[2], 1, gs[1]) > NOW then
        deferred = deferred or {}
        deferred[#deferred + 1] = kid
      end
    end
  elseif not ok then
    local at, why = fit_time(kid, lim, est, u)
    if at < retry_at then retry_at = at end
    reasons = reasons or {}
    reasons[#reasons + 1] = kid
    reasons[#reasons + 1] = why
    -- a key that cannot take even the smallest request leaves the eligible set
    if fit_time(kid, lim, 1, u) > NOW then
      deferred = deferred or {}
      deferred[#deferred + 1] = kid
    else
      qs.room = true  -- room for a smaller request
    end
  end
  if ok and qs.blocked and not qs.hx[kid] then
    local hfit = fits(lim, qs.hest, u)
                 and not (g and GS[g][2] and not fits(GS[g][2], qs.hest, GS[g][1]))
    if hfit or qs.starved then
      ok = false  -- held for the head (signalled if it can use it now)
      retry_at = NOW
      if hfit then qs.held = true end
      reasons = reasons or {}
      reasons[#reasons + 1] = kid
      reasons[#reasons + 1] = qs.why
    end
  end
  return ok, lim, u
end

-- The affinity's key, looked at first (and not again in its set): chosen if it fits.
local aff_key, aff_kid, aff_lim, aff_u = nil, nil, nil, nil
local aff_s = ARGV[ACQUIRE_AFFINITY]
local tiers_s = redis.call('HGET', CFG, TIERS_FIELD) or ''
if aff_s ~= '' then
  aff_key = BASE .. 'aff:' .. aff_s
  aff_kid = redis.call('GET', aff_key)
  if aff_kid and excluded and excluded[aff_kid] then aff_kid = nil end
  if aff_kid then
    local sc = redis.call('ZSCORE', AVAIL, aff_kid)
    if not sc and tiers_s ~= '' then  -- a key of a tier > 0
      sc = redis.call('ZSCORE', k_avail(limits(aff_kid)), aff_kid)
    end
    if sc and tonumber(sc) <= NOW then
      local r = redis.call('HMGET', K_USE, aff_kid, skey(aff_kid))
      local ok, lim, u = consider(aff_kid, r[1], r[2])
      if ok then aff_lim, aff_u = lim, u end
    else
      aff_kid = nil  -- not eligible: looked at (if at all) like any other key
    end
  end
end

-- Up to `want` keys of availability set `set` that fit, into F_* (least recently used
-- first, paging past the ones that do not).
local function scan(set)
  local offset, offset_s, size_s = 0, '0', want_s  -- (strings: a number costs a format)
  while nfit < want do
    local page = redis.call('ZRANGEBYSCORE', set, '-inf', NOW_S, 'LIMIT', offset_s, size_s)
    local np = #page
    if np == 0 then break end
    offset = offset + np
    listed = listed + np
    offset_s, size_s = tostring(offset), '16'
    for i = 1, np do FIELDS[2 * i - 1] = page[i]; FIELDS[2 * i] = skey(page[i]) end
    local uses = redis.call('HMGET', K_USE, unpack(FIELDS, 1, 2 * np))
    for i = 1, np do
      local kid = page[i]
      if excluded and excluded[kid] then
        reasons = reasons or {}
        reasons[#reasons + 1] = kid
        reasons[#reasons + 1] = 'excluded'
        qs.room = true  -- (it may have room for others)
      elseif kid ~= aff_kid then
        local ok, lim, u = consider(kid, uses[2 * i - 1], uses[2 * i])
        if ok then
          nfit = nfit + 1
          F_KID[nfit], F_LIM[nfit], F_U[nfit] = kid, lim, u
          if nfit >= want then break end
        end
      end
    end
  end
end

-- Tier by tier, lowest first: the affinity's key if it is of this tier and fits, else
-- the tier's candidates; a higher tier only if nothing of this one fits.
local held = false
if tiers_s == '' then
  if aff_lim then held = true else scan(AVAIL) end
else
  for t in string.gmatch(tiers_s, '%d+') do  -- (a set's name made only when looked at)
    if aff_lim and aff_lim.tier == tonumber(t) then held = true; break end
    scan(t == '0' and AVAIL or BASE .. 'avail:' .. t)
    if nfit > 0 then break end
  end
end
if held then
  nfit = 1
  F_KID[1], F_LIM[1], F_U[1] = aff_kid, aff_lim, aff_u
end

-- headroom: the smallest share left of the RPM, TPM, RPD and TPD of the key (and of its
-- group) after this request
local function headroom_of(lim, u)
  local head = 1 - u.cnt / lim.rpm
  local h2 = 1 - (u.sum + est) / lim.tpm
  if h2 < head then head = h2 end
  if lim.rpd > 0 then
    local h3 = 1 - u.today / lim.rpd
    if h3 < head then head = h3 end
  end
  if lim.tpd > 0 then
    local h4 = 1 - (u.ttoday + est) / lim.tpd
    if h4 < head then head = h4 end
  end
  return head
end

local function headroom(i)
  local head = headroom_of(F_LIM[i], F_U[i])
  local g = F_LIM[i].group
  if g and GS[g][2] then
    local h = headroom_of(GS[g][2], GS[g][1])
    if h < head then head = h end
  end
  return head
end

local pick = nil  -- index into F_*
if nfit > 0 then pick = 1 end
if nfit > 1 then
  if strategy == 'weighted' then
    local total = 0
    for i = 1, nfit do total = total + F_LIM[i].weight end
    local x = tonumber(ARGV[ACQUIRE_RANDOM]) * total
    for i = 1, nfit do
      x = x - F_LIM[i].weight
      if x < 0 then pick = i; break end
    end
  elseif strategy == 'most_headroom' then
    local best = headroom(1)
    for i = 2, nfit do
      local h = headroom(i)
      if h > best then pick, best = i, h end
    end
  end
end

local rs, kid, u, renew
local g, gu, glim, grenew = nil, nil, nil, false
if pick then
  kid, u = F_KID[pick], F_U[pick]
  renew = u.cnt == 0 or u.day ~= DAY_S
  u.seq = u.seq + 1
  rs = int_s(u.seq)
  add_use(u, est)
  nw = put_use(WRITES, nw, kid, u)  -- the last write of a key wins
  g = F_LIM[pick].group
  if g then
    gu, glim = GS[g][1], GS[g][2]
    if glim then
      grenew = gu.cnt == 0 or gu.day ~= DAY_S
      add_use(gu, est)
      nw = put_use(WRITES, nw, g, gu)
    else
      g = nil
    end
  end
end

-- write every changed summary before any rescore reads one
if nw > 0 then redis.call('HSET', K_USE, unpack(WRITES, 1, nw)) end
if deferred then for _, d in ipairs(deferred) do rescore(d) end end

if not pick then
  local waiting = false
  for _, set in ipairs(tier_sets(tiers_s)) do  -- (at most MAX_POOL_TIERS)
    local nxt = redis.call('ZRANGEBYSCORE', set, '(' .. NOW_S, '+inf', 'WITHSCORES', 'LIMIT', '0', '1')
    if #nxt > 0 then
      waiting = true
      if tonumber(nxt[2]) < retry_at then retry_at = tonumber(nxt[2]) end
    end
  end
  if not waiting and listed == 0 and redis.call('EXISTS', CFG) == 0 then
    return {-1}
  end
  local out = refuse(retry_at ~= INF and retry_at - NOW or -1)
  if reasons then for _, v in ipairs(reasons) do out[#out + 1] = v end end
  return out
end

local zk = BASE .. 'rpm:' .. kid
redis.call('ZADD', zk, NOW_S, rs .. ':' .. est_s)
if renew then redis.call('EXPIRE', zk, KEY_TTL_S) end
-- the key was eligible (no cooldown, not disabled): its new score follows from its usage
local at = fit_time(kid, F_LIM[pick], 1, u)
local gat = NOW
if g then
  local gz = BASE .. 'rpm:' .. g
  redis.call('ZADD', gz, NOW_S, rs .. '@' .. kid .. ':' .. est_s)
  if grenew then redis.call('EXPIRE', gz, KEY_TTL_S) end
  gat = fit_time(g, glim, 1, gu)
  if gat > at then at = gat end
end
if at == INF then at = NOW + 86400000000 end
redis.call('ZADD', k_avail(F_LIM[pick]), score_s(at), kid)
if gat > NOW then group_full(g, gat) end  -- the group is full: so are its other keys
if tn then TENANT.take(tn[1], tn[2], est, rs .. '@' .. kid .. ':' .. est_s) end
local aff = '-'
if aff_key then
  if held then
    aff = '1'
    redis.call('PEXPIRE', aff_key, ARGV[ACQUIRE_AFFINITY_TTL_MS])
  else
    aff = '0'
    redis.call('SET', aff_key, kid, 'PX', ARGV[ACQUIRE_AFFINITY_TTL_MS])
  end
end
if qs.blocked and not qs.hx[kid] then  -- passed the head on a key it did not fit
  redis.call('HSET', BASE .. 'qr', '~pass', qs.ht .. ' ' .. (qs.pn + 1))
end
if qs.m then
  QU.served(qs.tk, qs.m, qs.c, qs.sc)  -- the next ticket's turn
elseif qs.pc then
  QU.charge(ARGV[ACQUIRE_PRIORITY], qs.pc, qs.pr)  -- a turn without a ticket
end
local grant = rs .. ' ' .. DAY_S .. ' ' .. NOW_S .. ' ' .. aff .. ' ' .. (tn and ARGV[ACQUIRE_TENANT] or '-') .. ' ' .. kid
redis.call('SET', req_key, grant, 'PX', REQ_TTL_MS)
return grant
