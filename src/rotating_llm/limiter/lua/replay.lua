-- Replay reservations this process knows of into the pool: its grants of the current
-- window when Redis restarted empty or was flushed, what it granted while Redis was
-- lost (written back after recovery), or its share of what Redis held when failing over
-- (a seed of the in-process store). ARGV after the head: an epoch token, a hold (ms),
-- the processes to wait for, this process's tag, then quintuples id (a key id, '@<group>'
-- or a capped tenant's TENANT.MARK .. <digest>), member (without its ':<tokens>'),
-- instant (microseconds), tokens, and the epoch the member was granted under ('': the
-- member is this process's own name, kept as is).
-- A member granted under the pool's present epoch is skipped: that state still holds it
-- (or settled it). One granted under another epoch is renamed 'r<epoch>.<member>': the
-- state it was part of is gone, and new grants reuse its reservation id. A member
-- already held, or whose instant left the window, is skipped, so a replay sent twice
-- adds nothing. An instant after now (another clock) counts from now. A numeric member
-- raises the key's reservation sequence past it. A member DAY_SEED .. '<requests>' is a
-- day seed (see seed_day below).
-- The pool's epoch (BASE..'epoch') is set to the token unless it is set: a process that
-- finds another epoch later knows the pool's state was lost. When this call sets it and
-- the hold is > 0 (the caller knew an earlier state), every key of the pool cools down
-- that long, until the number of processes the caller saw (ARGV[HEAD_LEN + 3], itself
-- included) have replayed theirs: each replay adds its tag (ARGV[HEAD_LEN + 4]) to
-- BASE..'restored', and the last one ends the hold.
-- Returns {members added, the epoch, 1 if this call set it (the pool's state is new)}.
local HOLD_REASON = 'restoring: Redis lost its state'
local ek, rk, rsk = BASE .. 'epoch', BASE .. 'restore', BASE .. 'restored'
local epoch = ARGV[HEAD_LEN + 1]
local hold = tonumber(ARGV[HEAD_LEN + 2])
local fresh = redis.call('SETNX', ek, epoch)
if fresh == 0 then
  epoch = redis.call('GET', ek)
elseif hold > 0 then
  for _, kid in ipairs(key_ids()) do
    local cur = redis.call('PTTL', k_cool(kid))
    if cur == nil or cur < hold then redis.call('SET', k_cool(kid), HOLD_REASON, 'PX', hold) end
    rescore(kid)
  end
  redis.call('SET', rk, ARGV[HEAD_LEN + 3], 'PX', hold)
  redis.call('DEL', rsk)
end
local added, touched = 0, {}
-- A day seed (member DAY_SEED .. requests): id's use earlier today, outside the window;
-- it replaces the seed of the same day applied before (dayseed:<id>).
local function seed_day(id, n, t, at)
  local r = redis.call('HMGET', K_USE, id, skey(id))
  local u = current(id, r[1], r[2])
  if at < tonumber(DAY_S) then return false end  -- read on an earlier day
  if u.day ~= DAY_S then u.day, u.n, u.dt = DAY_S, 0, 0 end
  local sk = BASE .. 'dayseed:' .. id
  local on, ot, od = string.match(redis.call('GET', sk) or '', '^(%d+) (%d+) (%d+)$')
  if od ~= DAY_S then on, ot = 0, 0 end
  u.n = math.max(0, u.n + n - tonumber(on))
  u.dt = math.max(0, math.min(DT_MAX, u.dt + t - tonumber(ot)))
  redis.call('SET', sk, int_s(n) .. ' ' .. int_s(t) .. ' ' .. DAY_S, 'EX', KEY_TTL_S)
  redis.call('HSET', K_USE, unpack(use_args(id, u)))
  return true
end

for i = HEAD_LEN + 5, #ARGV - 4, 5 do
  local id, tok_s, e = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  local m = ARGV[i + 1] .. ':' .. tok_s
  if e ~= '' then m = 'r' .. e .. '.' .. m end
  local at = tonumber(ARGV[i + 2])
  if at > NOW then at = NOW end
  local day_n = string.match(ARGV[i + 1], '^' .. DAY_SEED .. '(%d+)$')
  if day_n then
    if seed_day(id, tonumber(day_n), tonumber(tok_s), at) then touched[id] = true end
  -- a grant made in the pool's present state is in it still, or was settled or trimmed
  -- there: never added again (its tokens may be changing under a settlement in flight)
  elseif e ~= epoch and at > CUTOFF and not redis.call('ZSCORE', k_rpm(id), m) then
    local r = redis.call('HMGET', K_USE, id, skey(id))
    local u = current(id, r[1], r[2])
    local tok = tonumber(tok_s)
    redis.call('ZADD', k_rpm(id), int_s(at), m)
    redis.call('EXPIRE', k_rpm(id), KEY_TTL_S)
    if u.cnt == 0 or at < u.old then u.old = at end
    u.cnt, u.sum = u.cnt + 1, u.sum + tok
    if u.day ~= DAY_S then u.day, u.n, u.dt = DAY_S, 0, 0 end
    u.n, u.dt = u.n + 1, u.dt + tok
    local seq = tonumber(string.match(m, '^(%d+)[:@]'))
    if seq and seq > u.seq then u.seq = seq end
    redis.call('HSET', K_USE, unpack(use_args(id, u)))
    touched[id] = true
    added = added + 1
  end
end
local expected = redis.call('GET', rk)
if expected then
  redis.call('SADD', rsk, ARGV[HEAD_LEN + 4])
  redis.call('PEXPIRE', rsk, redis.call('PTTL', rk))
  if redis.call('SCARD', rsk) >= tonumber(expected) then  -- everyone is in: end the hold
    redis.call('DEL', rk, rsk)
    for _, kid in ipairs(key_ids()) do
      if redis.call('GET', k_cool(kid)) == HOLD_REASON then redis.call('DEL', k_cool(kid)) end
      touched[kid] = true
    end
  end
end
for id, _ in pairs(touched) do  -- (a group or a capped tenant is in no availability set)
  if string.sub(id, 1, #GROUP_MARK) ~= GROUP_MARK and string.sub(id, 1, #TENANT.MARK) ~= TENANT.MARK then
    rescore(id)
  end
end
return {added, epoch, fresh}
