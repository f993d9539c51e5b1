-- A scheduled job is due: rq-scheduler's loop handed it to jobbalancer.compat.rq.Queue, which calls
-- this. A one-off job enters the inbox under its own id. A repeating schedule's record stays
-- 'scheduled' and each run is a new job run_id (<id>@<due epoch s>) with a copy of its spec; after
-- the last run the schedule's record ends 'succeeded'.
-- ARGV: prefix, id, run_id ('' for a one-off), last ('1' when this is the schedule's final run)
-- Returns 1 when a job entered the inbox, 0 when there was nothing to do (cancelled meanwhile, not
-- scheduled any more, or this run already handed over).
local id, run_id, last = ARGV[2], ARGV[3], ARGV[4]
local jk = jobkey(id)
local st, q, prio, rt = unpack(redis.call('HMGET', jk, 'status', 'queue', 'priority', 'realtime'))
if st ~= 'scheduled' then return 0 end
local sched_fields = {'sched_zset', 'sched_id', 'sched_job'}

if run_id == '' then
  redis.call('HSET', jk, 'status', 'queued')
  redis.call('HDEL', jk, unpack(sched_fields))
  event(id, 'queued', '')
  redis.call('HSET', jk, 'ie', redis.call('XADD', P .. ':inbox', '*', 'id', id, 'queue', q, 'priority', prio, 'realtime', rt))
  return 1
end

local done = 0
local rk = jobkey(run_id)
if redis.call('EXISTS', rk) == 0 then
  local _, secs = clock()
  local copied = {'kind', 'spec', 'queue', 'priority', 'retries', 'watchdog', 'realtime', 'result_ttl', 'meta'}
  local values = redis.call('HMGET', jk, unpack(copied))
  local fields = {'status', 'queued', 'attempts', 0, 'created_at', secs, 'schedule_of', id}
  for i, name in ipairs(copied) do
    if values[i] then
      fields[#fields + 1] = name
      fields[#fields + 1] = values[i]
    end
  end
  redis.call('HSET', rk, unpack(fields))
  redis.call('ZADD', P .. ':jobs', secs, run_id)
  event(run_id, 'queued', '')
  redis.call('HSET', rk, 'ie', redis.call('XADD', P .. ':inbox', '*', 'id', run_id, 'queue', q, 'priority', prio, 'realtime', rt))
  done = 1
end
if last == '1' then
  redis.call('HDEL', jk, unpack(sched_fields))
  finish(id, 'succeeded', 'result', cjson.encode(run_id))
end
return done
