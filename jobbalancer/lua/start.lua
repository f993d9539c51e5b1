-- A worker starts a job it read from its stream, if the job is still its own.
-- ARGV: prefix, worker, id, attempt, entry[, 'again']
-- Returns 1 to run it; 0 when the job was cancelled or taken back (the entry is dropped).
-- With 'again' (a slot's batch, started together by take.lua, reaches this job late): a job
-- still running here at that attempt gets its started_at and watchdog deadline from now;
-- returns 1 if so, 0 (nothing written) if the job is no longer its own.
local me, id, attempt = ARGV[2], ARGV[3], ARGV[4]
if ARGV[6] ~= 'again' then return start_job(me, id, attempt, ARGV[5]) and 1 or 0 end
local jk = jobkey(id)
local st, w, att, wd = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'watchdog'))
if st ~= 'running' or w ~= me or att ~= attempt then return 0 end
local ms, secs = clock()
redis.call('HSET', jk, 'started_at', secs)
local due = deadline_ms(wd, ms)
if due then redis.call('ZADD', P .. ':deadlines', 'XX', due, id) end
return 1
