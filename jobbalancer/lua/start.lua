-- A worker starts a job it read from its stream, if the job is still its own.
-- ARGV: prefix, worker, id, attempt, entry
-- Returns 1 to run it; 0 when the job was cancelled or taken back (the entry is dropped).
local me, id, attempt, entry = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local jk = jobkey(id)
local st, w, att, wd = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'watchdog'))
if st == 'assigned' and w == me and att == attempt then
  local ms, secs = clock()
  redis.call('HSET', jk, 'status', 'running', 'started_at', secs)
  if wd and wd ~= '' then
    redis.call('ZADD', P .. ':deadlines', ms + math.floor(tonumber(wd) * 1000), id)
  end
  event(id, 'running', me)
  return 1
end
drop_entry(me, entry)
return 0
