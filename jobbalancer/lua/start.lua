-- A worker starts a job it read from its stream, if the job is still its own.
-- ARGV: prefix, worker, id, attempt, entry
-- Returns 1 to run it; 0 when the job was cancelled or taken back (the entry is dropped).
return start_job(ARGV[2], ARGV[3], ARGV[4], ARGV[5]) and 1 or 0
