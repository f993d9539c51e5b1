-- Retries whose backoff is over (retry_later in _lib.lua) go back among the waiting, in their old
-- place. The leader calls this every maintenance tick. A job cancelled or restarted meanwhile is
-- only dropped from <p>:delayed.
-- ARGV: prefix, token, max (jobs per call)
-- Returns how many jobs were re-queued.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local ms = clock()
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', ms, 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZREM', P .. ':delayed', id)
  local jk = jobkey(id)
  local st, due = unpack(redis.call('HMGET', jk, 'status', 'retry_at'))
  if st == 'queued' and due then
    redis.call('HDEL', jk, 'retry_at')
    requeue(id)
    n = n + 1
  end
end
return n
