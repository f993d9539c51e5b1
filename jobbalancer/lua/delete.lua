-- Delete a finished job's record and output.
-- ARGV: prefix, id
-- Returns 'deleted', 'missing', or the non-terminal status that prevents it.
local id = ARGV[2]
local jk = jobkey(id)
local st = redis.call('HGET', jk, 'status')
if not st then
  redis.call('ZREM', P .. ':jobs', id)
  return 'missing'
end
if not TERMINAL[st] then return st end
redis.call('DEL', jk, jk .. ':out')
redis.call('ZREM', P .. ':jobs', id)
return 'deleted'
