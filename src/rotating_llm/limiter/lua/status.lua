-- Usage and health of keys. ARGV[HEAD_LEN + 1 ..] key ids (none: every key of the pool);
-- an id '@<group>' (GROUP_MARK) asks for a quota group (no cooldown or disable of its
-- own). Returns per id STATUS_WIDTH values, at the STATUS_* offsets of the schema.
local ids = {}
for i = HEAD_LEN + 1, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = key_ids() end
local out = {}
for n, kid in ipairs(ids) do
  local lim, u, at
  local ms, creason, dreason = 0, '', ''
  if string.sub(kid, 1, #GROUP_MARK) == GROUP_MARK then
    u, lim = group_usage(kid)
    if lim then at = fit_time(kid, lim, 1, u) end
  else
    lim = limits(kid)
    u = usage(kid)
    ms = redis.call('PTTL', k_cool(kid))
    if ms and ms > 0 then creason = redis.call('GET', k_cool(kid)) or '' else ms = 0 end
    dreason = redis.call('HGET', K_DISABLED, kid) or ''
    if lim then at = key_fit(kid, lim, 1, u) end
  end
  local nxt = -1
  if at and at ~= INF then nxt = at - NOW end
  local b = (n - 1) * STATUS_WIDTH + 1
  out[b + STATUS_KEY_ID] = kid
  out[b + STATUS_IN_POOL] = lim and 1 or 0
  out[b + STATUS_RPM_COUNT] = u.cnt
  out[b + STATUS_TPM_USED] = u.sum
  out[b + STATUS_RPD_COUNT] = u.today
  out[b + STATUS_TPD_USED] = u.ttoday
  out[b + STATUS_COOLDOWN_MS] = ms
  out[b + STATUS_COOLDOWN_REASON] = creason
  out[b + STATUS_DISABLED_REASON] = dreason
  out[b + STATUS_NEXT_FIT_US] = nxt
end
return out
