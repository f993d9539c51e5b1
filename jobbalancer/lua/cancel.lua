-- Cancel a job. Scheduled, waiting or assigned: cancelled at once. Running: the owning worker is
-- told to kill it and records "cancelled" itself.
-- ARGV: prefix, id
-- Returns the outcome: 'cancelled', 'cancelling', 'missing', or the terminal status it already had.
local id = ARGV[2]
local jk = jobkey(id)
local st, q, wm, w, entry, att = unpack(redis.call('HMGET', jk, 'status', 'queue', 'wm', 'worker', 'entry', 'attempts'))
if not st then return 'missing' end
if st == 'scheduled' then
  -- take it out of rq-scheduler's schedule too (the keys it was filed under, see jobbalancer/schedule)
  local zset, sid, sjob = unpack(redis.call('HMGET', jk, 'sched_zset', 'sched_id', 'sched_job'))
  if zset and sid then redis.call('ZREM', zset, sid) end
  if sjob then redis.call('DEL', sjob) end
  redis.call('HDEL', jk, 'sched_zset', 'sched_id', 'sched_job')
  finish(id, 'cancelled', 'exit_code', 130, 'error', 'cancelled before it was due')
  return 'cancelled'
end
if st == 'queued' then
  if wm then waiting_rem(q, wm) end
  finish(id, 'cancelled', 'exit_code', 130, 'error', 'cancelled before it started')
  return 'cancelled'
end
if st == 'assigned' then
  drop_entry(w, entry)
  finish(id, 'cancelled', 'exit_code', 130, 'error', 'cancelled before it started')
  tick_if_waiting()
  return 'cancelled'
end
if st == 'running' then
  redis.call('HSET', jk, 'cancel', '1')
  redis.call('XADD', P .. ':w:' .. w .. ':ctl', 'MAXLEN', '~', 1000, '*', 'op', 'cancel', 'id', id, 'attempt', att)
  return 'cancelling'
end
return st
