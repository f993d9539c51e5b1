-- The balancer lease. With the holder's token: renew it (or, mode "release", give it up).
-- Without a valid token: take the lease if nobody holds it, under a new fencing epoch.
-- ARGV: prefix, owner, ttl_ms, token ('' if none), mode ('hold' or 'release')
-- Returns the token held after the call, or false when another balancer holds the lease.
local key = P .. ':leader'
local cur = redis.call('GET', key)
local token = ARGV[4]
if ARGV[5] == 'release' then
  if cur == token then redis.call('DEL', key) end
  return false
end
if token ~= '' and cur == token then
  redis.call('PEXPIRE', key, ARGV[3])
  return token
end
if cur then return false end
token = redis.call('INCR', key .. ':epoch') .. ':' .. ARGV[2]
redis.call('SET', key, token, 'PX', ARGV[3])
return token
