-- A worker records the outcome of one attempt, fenced: only the worker that owns the job at that
-- attempt may write it. A failed attempt with retries left goes back to waiting (after its backoff,
-- if it has one: retry_later in _lib.lua). A failed job that spent its retries, or that the worker
-- could not even parse, is also copied to the dead letters.
-- ARGV: prefix, worker, id, attempt, entry, status, exit_code, error, result, stdout, stderr
-- Returns 1 recorded, 2 re-queued for a retry, 0 fenced out (not ours any more; nothing written).
local me, id, attempt, entry, status = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local jk = jobkey(id)
drop_entry(me, entry)
local st, w, att, retries, failures = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'retries', 'failures'))
if not (w == me and att == attempt and (st == 'running' or st == 'assigned')) then return 0 end
local wk = P .. ':w:' .. me
if redis.call('EXISTS', wk) == 1 then redis.call('HINCRBY', wk, 'jobs_done', 1) end
local extra = {}
local names = {'exit_code', 'error', 'result', 'stdout', 'stderr'}
for i, name in ipairs(names) do
  local v = ARGV[6 + i]
  if v ~= '' then
    extra[#extra + 1] = name
    extra[#extra + 1] = v
  end
end
if status == 'failed' and (tonumber(failures) or 0) < (tonumber(retries) or 0) then
  local n = redis.call('HINCRBY', jk, 'failures', 1)
  if #extra > 0 then redis.call('HSET', jk, unpack(extra)) end
  retry_later(id, n)
  return 2
end
finish(id, status, unpack(extra))
if status == 'failed' then dead_if_spent(id, retries, ARGV[8]) end
tick_if_waiting()
return 1
