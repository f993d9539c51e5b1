-- The balancer's decisions for one pass, applied atomically and fenced by its lease token.
-- ARGV: prefix, token, ops (JSON list). Each op:
--   {o="a", id, w, e?, m?}  assign job id to worker w (from inbox entry e, or waiting member m)
--   {o="w", id, e}          no slot now: move from the inbox to the waiting set
--   {o="r", id, e}          realtime job with no free slot: rejected
--   {o="d", id?, e, why, raw} unparsable inbox entry: dead-lettered
--   {o="x", e}              nothing to do for this inbox entry (a tick): drop it
-- Every inbox entry named is acked and deleted. Returns one code per op: 1 applied, 0 skipped
-- because the job changed meanwhile (cancelled, already placed), or because its worker left
-- <p>:workers (handed back, reclaimed) after the balancer looked: that job waits instead.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local ops = cjson.decode(ARGV[3])
local inbox = P .. ':inbox'
local res = {}

local registered = {}
local function registered_worker(w)
  if registered[w] == nil then registered[w] = redis.call('ZSCORE', P .. ':workers', w) ~= false end
  return registered[w]
end

local function assign(op, jk, q, wm)
  if wm then waiting_rem(q, wm) end
  local attempt = redis.call('HINCRBY', jk, 'attempts', 1)
  local kind, spec, wd = unpack(redis.call('HMGET', jk, 'kind', 'spec', 'watchdog'))
  local entry = redis.call('XADD', wstream(op.w), '*', 'id', op.id, 'attempt', attempt,
    'kind', kind, 'spec', spec, 'watchdog', wd or '')
  redis.call('HSET', jk, 'status', 'assigned', 'worker', op.w, 'entry', entry)
  redis.call('HDEL', jk, 'wm')
  event(op.id, 'assigned', op.w)
end

for i, op in ipairs(ops) do
  local r = 0
  if op.o == 'd' then
    dead(op.id, op.why, op.raw)
    r = 1
  elseif op.o ~= 'x' then
    local jk = jobkey(op.id)
    local st, q, prio, wm = unpack(redis.call('HMGET', jk, 'status', 'queue', 'priority', 'wm'))
    -- queued with no waiting member means "in the inbox"; with one, "in the waiting set".
    if st == 'queued' and (op.m or '') == (wm or '') then
      local gone = op.o == 'a' and not registered_worker(op.w)
      if op.o == 'a' and not gone then
        assign(op, jk, q, wm)
      elseif gone and not wm and redis.call('HGET', jk, 'realtime') == '1' then
        finish(op.id, 'rejected', 'exit_code', 75, 'error', 'realtime job: its worker ' .. op.w .. ' left before it started')
      elseif op.o == 'w' or (gone and not wm) then
        local m = waiting_member(jk, op.id)
        redis.call('HSET', jk, 'wm', m)
        waiting_add(q, m, prio)
      elseif op.o == 'r' then
        finish(op.id, 'rejected', 'exit_code', 75, 'error', 'realtime job: no worker of queue ' .. q .. ' had a free slot')
      end
      r = gone and 0 or 1
    elseif not st and op.e then
      dead(op.id, 'inbox entry names job ' .. op.id .. ', which has no record (never submitted, deleted or expired)', '')
    end
  end
  -- Acked only once its op is done: a script error (OOM, WRONGTYPE) leaves the entry pending.
  if op.e and op.e ~= '' then
    redis.call('XACK', inbox, 'balancers', op.e)
    redis.call('XDEL', inbox, op.e)
  end
  res[i] = r
end
return res
