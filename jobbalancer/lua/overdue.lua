-- Watchdog backstop: a running job far past its deadline whose worker did not end it is recorded
-- as timed_out by the balancer, and the worker is told to kill it.
-- ARGV: prefix, token, id, cutoff_ms (deadlines at or before it are overdue)
-- Returns 1 when the job was timed out, 0 when it had moved on.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local id = ARGV[3]
local jk = jobkey(id)
local deadline = tonumber(redis.call('ZSCORE', P .. ':deadlines', id))
local st, w, entry, att = unpack(redis.call('HMGET', jk, 'status', 'worker', 'entry', 'attempts'))
if st ~= 'running' or not deadline or deadline > tonumber(ARGV[4]) then
  if st ~= 'running' then redis.call('ZREM', P .. ':deadlines', id) end
  return 0
end
drop_entry(w, entry)
redis.call('XADD', P .. ':w:' .. w .. ':ctl', 'MAXLEN', '~', 1000, '*', 'op', 'cancel', 'id', id, 'attempt', att)
finish(id, 'timed_out', 'exit_code', 124, 'error', 'watchdog expired and worker ' .. w .. ' did not stop the job')
stats_count('watchdog|balancer', 1)
tick_if_waiting()
return 1
