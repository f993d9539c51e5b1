-- Run a finished job again under the same id: its outcome is cleared and it re-enters the inbox.
-- Attempts keep counting up, so a late write from an earlier run stays fenced out.
-- ARGV: prefix, id
-- Returns 'restarted', 'missing', or the non-terminal status that prevents it.
local id = ARGV[2]
local jk = jobkey(id)
local st, q, prio, rt = unpack(redis.call('HMGET', jk, 'status', 'queue', 'priority', 'realtime'))
if not st then return 'missing' end
if not TERMINAL[st] then return st end
redis.call('HDEL', jk, 'worker', 'exit_code', 'error', 'result', 'stdout', 'stderr', 'started_at',
  'finished_at', 'lost', 'failures', 'cancel', 'wm', 'entry', 'seq')
redis.call('HSET', jk, 'status', 'queued')
redis.call('PERSIST', jk)
redis.call('DEL', jk .. ':out')
redis.call('HSET', jk, 'ie', redis.call('XADD', P .. ':inbox', '*', 'id', id, 'queue', q, 'priority', prio, 'realtime', rt))
event(id, 'queued', '')
return 'restarted'
