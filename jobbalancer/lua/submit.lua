-- Create a job and hand it to the balancers. Idempotent on the id: an existing job is left as it is.
-- ARGV: prefix, id, kind, spec, queue, priority, retries, watchdog, realtime
-- Returns 1 when created, 0 when the id already existed.
local id = ARGV[2]
local jk = jobkey(id)
if redis.call('EXISTS', jk) == 1 then return 0 end
local _, secs = clock()
redis.call('HSET', jk, 'kind', ARGV[3], 'spec', ARGV[4], 'queue', ARGV[5], 'priority', ARGV[6],
  'retries', ARGV[7], 'watchdog', ARGV[8], 'realtime', ARGV[9], 'status', 'queued', 'attempts', 0,
  'created_at', secs)
redis.call('ZADD', P .. ':jobs', secs, id)
redis.call('XADD', P .. ':inbox', '*', 'id', id, 'queue', ARGV[5], 'priority', ARGV[6], 'realtime', ARGV[9])
event(id, 'queued', '')
return 1
