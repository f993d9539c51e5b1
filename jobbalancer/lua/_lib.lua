-- Shared helpers, prepended to every script by jobbalancer/scripts.py (after a generated
-- DEFAULTS table). ARGV[1] is always the key prefix; key names follow jobbalancer/keys.py.
if redis.replicate_commands then redis.replicate_commands() end
local P = ARGV[1]

-- Redis's clock: milliseconds (number) and epoch seconds (string with microseconds).
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

local function setting(name)
  local v = redis.call('HGET', P .. ':config', name)
  return tonumber(v) or tonumber(DEFAULTS[name])
end

local function jobkey(id) return P .. ':job:' .. id end
local function wstream(worker) return P .. ':w:' .. worker .. ':jobs' end

local function lease_ok(token)
  return token == '' or redis.call('GET', P .. ':leader') == token
end

local function event(id, status, worker)
  redis.call('XADD', P .. ':events', 'MAXLEN', '~', 10000, '*', 'id', id, 'status', status, 'worker', worker or '')
end

local function dead(id, reason, raw)
  local _, secs = clock()
  redis.call('XADD', P .. ':dead', 'MAXLEN', '~', 100000, '*', 'id', id or '', 'reason', reason, 'raw', raw or '', 'at', secs)
end

-- Drop one entry of a worker's stream (ack in its group, then delete). The group may be gone
-- when the stream was reclaimed, hence pcall.
local function drop_entry(worker, entry)
  if entry and entry ~= '' then
    redis.pcall('XACK', wstream(worker), 'worker', entry)
    redis.call('XDEL', wstream(worker), entry)
  end
end

-- A freed slot or a newly waiting job wakes the balancer through a tick in its inbox.
local function tick_if_waiting()
  if redis.call('SCARD', P .. ':waitq') > 0 then
    redis.call('XADD', P .. ':inbox', '*', 'tick', '1')
  end
end

local function waiting_add(queue, member, priority)
  redis.call('ZADD', P .. ':waiting:' .. queue, -tonumber(priority), member)
  redis.call('SADD', P .. ':waitq', queue)
end

local function waiting_rem(queue, member)
  local key = P .. ':waiting:' .. queue
  redis.call('ZREM', key, member)
  if redis.call('ZCARD', key) == 0 then redis.call('SREM', P .. ':waitq', queue) end
end

-- A job's member in its waiting zset: its arrival sequence (kept for life, so a job put back
-- regains its place) and its id. Equal scores sort by member, which makes each priority FIFO.
local function waiting_member(jk, id)
  local seq = redis.call('HGET', jk, 'seq')
  if not seq then
    seq = string.format('%016d', redis.call('INCR', P .. ':seq'))
    redis.call('HSET', jk, 'seq', seq)
  end
  return seq .. ':' .. id
end

-- Put a job back among the waiting, in the place its priority and first arrival give it.
local function requeue(id)
  local jk = jobkey(id)
  local q, prio = unpack(redis.call('HMGET', jk, 'queue', 'priority'))
  local wm = waiting_member(jk, id)
  redis.call('HSET', jk, 'status', 'queued', 'wm', wm)
  redis.call('HDEL', jk, 'worker', 'entry', 'started_at', 'cancel')
  redis.call('ZREM', P .. ':deadlines', id)
  waiting_add(q, wm, prio)
  event(id, 'queued', '')
  tick_if_waiting()
end

-- Record a terminal status with extra field/value pairs; start the record's TTL; wake waiters.
local function finish(id, status, ...)
  local jk = jobkey(id)
  local _, secs = clock()
  local ttl = setting('result_ttl')
  local worker = redis.call('HGET', jk, 'worker')
  redis.call('HSET', jk, 'status', status, 'finished_at', secs, ...)
  redis.call('HDEL', jk, 'wm', 'entry', 'cancel', 'seq')
  redis.call('EXPIRE', jk, ttl)
  redis.call('ZREM', P .. ':deadlines', id)
  local out = jk .. ':out'
  if redis.call('EXISTS', out) == 1 then
    redis.call('XADD', out, '*', 'end', status)
    redis.call('EXPIRE', out, ttl)
  end
  event(id, status, worker)
end

local TERMINAL = {succeeded = true, failed = true, timed_out = true, cancelled = true, rejected = true}
