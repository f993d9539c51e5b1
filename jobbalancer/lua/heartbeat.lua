-- A worker's heartbeat: its facts and load, the hash's expiry, and its place in the live set, in
-- one step on Redis's clock.
-- ARGV: prefix, worker, hash_ttl_ms, then field/value pairs
-- Returns {now_ms, was_registered (0 after a reclaim removed it), config hash as a flat list}.
local me = ARGV[2]
local ms, secs = clock()
local wk = P .. ':w:' .. me
local known = redis.call('ZSCORE', P .. ':workers', me)
redis.call('HSET', wk, 'last_seen', secs, unpack(ARGV, 4))
redis.call('PEXPIRE', wk, ARGV[3])
redis.call('ZADD', P .. ':workers', ms, me)
return {ms, known and 1 or 0, redis.call('HGETALL', P .. ':config')}
