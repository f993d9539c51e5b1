-- The balancer's decisions for one pass, applied atomically and fenced by its lease token.
-- ARGV: prefix, token, then five strings per op (flat, so nothing is decoded: '' for a blank):
--   a  id  w    e   m     assign job id to worker w (from inbox entry e, or else waiting member m)
--   w  id  ''   e   ''    no slot now: move from the inbox to the waiting set
--   r  id  ''   e   ''    realtime job with no free slot: rejected
--   d  id  why  e   raw   unparsable inbox entry (id may be ''): dead-lettered
--   x  ''  ''   e   ''    nothing to do for this inbox entry (a tick): drop it
-- Every inbox entry named is acked after the ops, and the inbox trimmed up to the oldest entry
-- still pending (or not yet read), so an acked entry is gone unless an older one is still pending
-- (left by a term that ended mid-pass, until the next term places it). Returns one code per
-- op: 1 applied; 0 skipped because the job changed meanwhile (cancelled, already placed) or its
-- record is not a hash (then its entry is dead-lettered, naming the error); 2 not applied
-- because worker w left <p>:workers (handed back, reclaimed) after the balancer looked: that job
-- waits instead (a realtime one is rejected).
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local inbox = P .. ':inbox'
local res, acks = {}, {}
batch_begin()  -- one event entry per worker for the jobs assigned to it

local registered = {}
local function registered_worker(w)
  if registered[w] == nil then registered[w] = redis.call('ZSCORE', P .. ':workers', w) ~= false end
  return registered[w]
end

-- Members taken out of the waiting sets, per queue: removed together after the ops (one ZREM and
-- one ZCARD per queue and call, not per job); the records drop their 'wm' at once, and every
-- check of a job's place reads its record, so nothing in between can tell the difference.
local taken, taken_queues = {}, {}

-- The list kept for one queue in lists (made on first use, its queue appended to order).
local function per_queue(lists, order, queue)
  local list = lists[queue]
  if not list then
    list = {}
    lists[queue] = list
    order[#order + 1] = queue
  end
  return list
end

-- One HMGET reads all an assignment needs; attempts is written back with the rest (no HINCRBY).
local FIELDS = {'status', 'queue', 'priority', 'wm', 'attempts', 'kind', 'spec', 'watchdog', 'realtime', 'seq'}

-- Jobs that go to wait, per queue: added together after the ops (one ZADD per queue and call).
-- Their arrival sequence numbers (see waiting_member in _lib.lua) are reserved for all the call's
-- 'w' ops with one INCRBY; a job that has one already keeps it.
local waits, seq_base, seq_used = 0, nil, 0
for i = 3, #ARGV - 4, 5 do
  if ARGV[i] == 'w' then waits = waits + 1 end
end
local added, added_queues = {}, {}

local function new_seq()
  if seq_used < waits then
    seq_base = seq_base or redis.call('INCRBY', P .. ':seq', waits) - waits
    seq_used = seq_used + 1
    return seq_text(seq_base + seq_used)
  end
  return seq_text(redis.call('INCR', P .. ':seq'))  -- a job whose worker left
end

local function to_wait(jk, id, queue, priority, seq)
  seq = seq or new_seq()
  local member = seq .. ':' .. id
  redis.call('HSET', jk, 'wm', member, 'seq', seq)
  local list = per_queue(added, added_queues, queue)
  list[#list + 1] = -tonumber(priority)
  list[#list + 1] = member
end

local function assign(id, w, jk, queue, wm, attempts, kind, spec, watchdog)
  if wm then
    local members = per_queue(taken, taken_queues, queue)
    members[#members + 1] = wm
    redis.call('HDEL', jk, 'wm')
  end
  local attempt = (tonumber(attempts) or 0) + 1
  local entry = redis.call('XADD', wstream(w), '*', 'id', id, 'attempt', attempt,
    'kind', kind, 'spec', spec, 'watchdog', watchdog or '')
  redis.call('HSET', jk, 'status', 'assigned', 'worker', w, 'entry', entry, 'attempts', attempt)
  event(id, 'assigned', w)
end

local function unplaceable(o, id, w, e, m, err)
  if e == '' then return end
  if err then
    local op = {o = o, id = id, e = e}
    if w ~= '' then op.w = w end
    if m ~= '' then op.m = m end
    dead(id, 'could not be placed: ' .. err, cjson.encode(op))
  else
    dead(id, 'inbox entry names job ' .. id .. ', which has no record (never submitted, deleted or expired)', '')
  end
end

local function place(o, id, w, e, m)
  local jk = jobkey(id)
  local row = redis.pcall('HMGET', jk, unpack(FIELDS))
  if row.err or not row[1] then  -- not a hash (it can never be placed), or no record at all
    unplaceable(o, id, w, e, m, row.err)
    return 0
  end
  local status, queue, priority, wm, attempts, kind, spec, watchdog, realtime, seq = unpack(row, 1, 10)
  wm, seq = wm or nil, seq or nil  -- a missing field comes as false
  -- queued with no waiting member means "in the inbox"; with one, "in the waiting set".
  if status ~= 'queued' or m ~= (wm or '') then return 0 end
  local gone = o == 'a' and not registered_worker(w)
  if o == 'a' and not gone then
    assign(id, w, jk, queue, wm, attempts, kind, spec, watchdog)
    return 1
  elseif gone and not wm and realtime == '1' then
    finish(id, 'rejected', 'exit_code', 75, 'error', 'realtime job: its worker ' .. w .. ' left before it started')
  elseif o == 'w' or (gone and not wm) then
    to_wait(jk, id, queue, priority, seq)
  elseif o == 'r' then
    finish(id, 'rejected', 'exit_code', 75, 'error', 'realtime job: no worker of queue ' .. queue .. ' had a free slot')
  end
  return gone and 2 or 1
end

local n = 0
for i = 3, #ARGV - 4, 5 do
  local o, id, x, e, y = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  n = n + 1
  if o == 'd' then
    dead(id, x, y)
    res[n] = 1
  elseif o == 'x' then
    res[n] = 0
  else
    res[n] = place(o, id, x, e, y)
  end
  if e ~= '' then acks[#acks + 1] = e end
end
for _, queue in ipairs(added_queues) do
  local key, list = P .. ':waiting:' .. queue, added[queue]
  for s = 1, #list, 2000 do redis.call('ZADD', key, unpack(list, s, math.min(s + 1999, #list))) end
  redis.call('SADD', P .. ':waitq', queue)
end
for _, queue in ipairs(taken_queues) do
  local key, members = P .. ':waiting:' .. queue, taken[queue]
  for s = 1, #members, 1000 do redis.call('ZREM', key, unpack(members, s, math.min(s + 999, #members))) end
  if redis.call('ZCARD', key) == 0 then redis.call('SREM', P .. ':waitq', queue) end
end
-- Acked in slices (unpack's stack limit). A script error before this point (OOM) leaves every
-- entry of the call pending: the next term re-reads them, and the ops already applied are skipped.
for s = 1, #acks, 1000 do
  redis.call('XACK', inbox, 'balancers', unpack(acks, s, math.min(s + 999, #acks)))
end
-- Then the inbox drops every entry older than the oldest one still pending or, with none pending,
-- than the next one not read yet: one XTRIM MINID costs about what XDEL costs for a single entry.
local pending = #acks > 0 and redis.pcall('XPENDING', inbox, 'balancers')
if pending and pending.err then  -- no group: the entries were not read through it (tests, hand calls)
  for s = 1, #acks, 1000 do redis.call('XDEL', inbox, unpack(acks, s, math.min(s + 999, #acks))) end
elseif pending then
  local bound = pending[1] > 0 and pending[2] or nil
  if not bound then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', inbox)) do
      local f = {}
      for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
      if f.name == 'balancers' then
        local ms, seq = string.match(f['last-delivered-id'], '^(%d+)-(%d+)$')
        bound = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
      end
    end
  end
  if bound then redis.call('XTRIM', inbox, 'MINID', bound) end
end
batch_end()
return res
