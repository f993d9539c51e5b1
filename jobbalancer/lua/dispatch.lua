-- The balancer's decisions for one pass, applied atomically and fenced by its lease token.
-- ARGV: prefix, token, ops (JSON list). Each op:
--   {o="a", id, w, e?, m?}  assign job id to worker w (from inbox entry e, or waiting member m)
--   {o="w", id, e}          no slot now: move from the inbox to the waiting set
--   {o="r", id, e}          realtime job with no free slot: rejected
--   {o="d", id?, e, why, raw} unparsable inbox entry: dead-lettered
--   {o="x", e}              nothing to do for this inbox entry (a tick): drop it
-- Every inbox entry named is acked after the ops, and the inbox trimmed up to the oldest entry
-- still pending (or not yet read), so an acked entry is gone unless an older one is still pending
-- (left by a term that ended mid-pass, until the next term places it). Returns one code per
-- op: 1 applied; 0 skipped because the job changed meanwhile (cancelled, already placed) or its
-- record is not a hash (then its entry is dead-lettered, naming the error); 2 not applied
-- because worker w left <p>:workers (handed back, reclaimed) after the balancer looked: that job
-- waits instead (a realtime one is rejected).
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local ops = cjson.decode(ARGV[3])
local inbox = P .. ':inbox'
local res, acks = {}, {}

local registered = {}
local function registered_worker(w)
  if registered[w] == nil then registered[w] = redis.call('ZSCORE', P .. ':workers', w) ~= false end
  return registered[w]
end

-- One HMGET reads all an assignment needs; attempts is written back with the rest (no HINCRBY).
local FIELDS = {'status', 'queue', 'priority', 'wm', 'attempts', 'kind', 'spec', 'watchdog', 'realtime'}

local function assign(op, jk, f)
  if f.wm then
    waiting_rem(f.queue, f.wm)
    redis.call('HDEL', jk, 'wm')
  end
  local attempt = (tonumber(f.attempts) or 0) + 1
  local entry = redis.call('XADD', wstream(op.w), '*', 'id', op.id, 'attempt', attempt,
    'kind', f.kind, 'spec', f.spec, 'watchdog', f.watchdog or '')
  redis.call('HSET', jk, 'status', 'assigned', 'worker', op.w, 'entry', entry, 'attempts', attempt)
  event(op.id, 'assigned', op.w)
end

local function place(op)
  local jk = jobkey(op.id)
  local row = redis.pcall('HMGET', jk, unpack(FIELDS))
  if row.err then  -- the job key holds something else: this entry can never be placed
    if op.e then dead(op.id, 'could not be placed: ' .. row.err, cjson.encode(op)) end
    return 0
  end
  local f = {}
  for i, name in ipairs(FIELDS) do f[name] = row[i] or nil end
  if not f.status then
    if op.e then
      dead(op.id, 'inbox entry names job ' .. op.id .. ', which has no record (never submitted, deleted or expired)', '')
    end
    return 0
  end
  -- queued with no waiting member means "in the inbox"; with one, "in the waiting set".
  if f.status ~= 'queued' or (op.m or '') ~= (f.wm or '') then return 0 end
  local gone = op.o == 'a' and not registered_worker(op.w)
  if op.o == 'a' and not gone then
    assign(op, jk, f)
    return 1
  elseif gone and not f.wm and f.realtime == '1' then
    finish(op.id, 'rejected', 'exit_code', 75, 'error', 'realtime job: its worker ' .. op.w .. ' left before it started')
  elseif op.o == 'w' or (gone and not f.wm) then
    local m = waiting_member(jk, op.id)
    redis.call('HSET', jk, 'wm', m)
    waiting_add(f.queue, m, f.priority)
  elseif op.o == 'r' then
    finish(op.id, 'rejected', 'exit_code', 75, 'error', 'realtime job: no worker of queue ' .. f.queue .. ' had a free slot')
  end
  return gone and 2 or 1
end

for i, op in ipairs(ops) do
  if op.o == 'd' then
    dead(op.id, op.why, op.raw)
    res[i] = 1
  elseif op.o == 'x' then
    res[i] = 0
  else
    res[i] = place(op)
  end
  if op.e and op.e ~= '' then acks[#acks + 1] = op.e end
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
return res
