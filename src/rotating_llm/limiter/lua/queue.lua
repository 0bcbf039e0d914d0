-- The pool's queue (layout in _schema). ARGV[QUEUE_ACTION]:
--   'leave'  ARGV[QUEUE_TICKET] gives up its place (its caller stopped waiting); if it
--            was the head, the next head is signalled.
-- Returns 1 if the ticket was in the queue, else 0.
local t, action = ARGV[QUEUE_TICKET], ARGV[QUEUE_ACTION]
if action ~= 'leave' then
  return redis.error_reply('unknown queue action ' .. tostring(action))
end
local rec = redis.call('HGET', BASE .. 'qt', t)
if not rec then return 0 end
local _e, m, c = QU.ticket(rec)
local sc = tonumber(redis.call('ZSCORE', BASE .. 'q', m))
local first = redis.call('ZRANK', BASE .. 'q', m) == 0
QU.remove(t, m, c, sc)
local _m, _s, nt = QU.head()
if first and nt then redis.call('PUBLISH', BASE .. 'q', nt) end
return 1
