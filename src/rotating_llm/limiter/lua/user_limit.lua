-- User and global request limits (the original design's rl:user:<id> and rl:global):
-- sliding windows on Redis's clock; both are checked and both reserved, or neither.
-- KEYS[1] user window zset, KEYS[2] global window zset (same hash tag).
-- ARGV[1] window (microseconds), ARGV[2] user limit, ARGV[3] global limit (0 = none),
-- ARGV[4] request id (unique).
-- Returns {allowed (1/0), retry_after_us, user_count, global_count, which ('user'|'global'|'')}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local ulimit, glimit = tonumber(ARGV[2]), tonumber(ARGV[3])
local cutoff = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local ucount = redis.call('ZCARD', KEYS[1])
local gcount = 0
if glimit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  gcount = redis.call('ZCARD', KEYS[2])
end
local retry, which = 0, ''
if ucount >= ulimit then
  local e = redis.call('ZRANGE', KEYS[1], ucount - ulimit, ucount - ulimit, 'WITHSCORES')
  retry, which = tonumber(e[2]) + window - now, 'user'
end
if glimit > 0 and gcount >= glimit then
  local e = redis.call('ZRANGE', KEYS[2], gcount - glimit, gcount - glimit, 'WITHSCORES')
  local r = tonumber(e[2]) + window - now
  if r > retry then retry, which = r, 'global' end
end
if which ~= '' then return {0, retry, ucount, gcount, which} end
local ms = math.floor(window / 1000) + 1000
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ms)
if glimit > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ms)
end
return {1, 0, ucount + 1, gcount + 1, ''}
