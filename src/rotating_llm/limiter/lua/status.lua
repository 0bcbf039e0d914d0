-- Usage and health of keys. ARGV[3..] key ids (none: every key of the pool).
-- Returns per key a flat list:
--   key_id, in_pool (0/1), rpm_count, tpm_used, rpd_count, cooldown_ms, cooldown_reason,
--   disabled_reason, next_fit_us_from_now (-1 never)
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('HKEYS', CFG) end
local out = {}
for _, kid in ipairs(ids) do
  local lim = limits(kid)
  local count, tsum, today = usage(kid)
  local ms = redis.call('PTTL', k_cool(kid))
  local creason = ''
  if ms and ms > 0 then creason = redis.call('GET', k_cool(kid)) or '' else ms = 0 end
  local dreason = redis.call('HGET', K_DISABLED, kid) or ''
  local nxt = -1
  if lim then
    local at = fit_time(kid, lim, 1, count, tsum, today)
    if at ~= INF then nxt = at - NOW end
  end
  out[#out + 1] = kid
  out[#out + 1] = lim and 1 or 0
  out[#out + 1] = count
  out[#out + 1] = tsum
  out[#out + 1] = today
  out[#out + 1] = ms
  out[#out + 1] = creason
  out[#out + 1] = dreason
  out[#out + 1] = nxt
end
return out
