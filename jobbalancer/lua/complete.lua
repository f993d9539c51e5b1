-- A worker records the outcome of one attempt, fenced (complete_job in _lib.lua).
-- ARGV: prefix, worker, id, attempt, entry, status, exit_code, error, result, stdout, stderr
-- Returns 1 recorded, 2 re-queued for a retry, 0 fenced out (not ours any more; nothing written).
local me = ARGV[2]
batch_begin()
local r = complete_job(me, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
batch_end()
jobs_done(me, r > 0 and 1 or 0, r == 1 and 1 or 0)
return r
