-- The balancer's safety net for jobs whose place vanished under them: a worker stream entry that
-- was trimmed or deleted (XTRIM, XDEL, a hand edit) before the job ended, or a waiting member
-- removed from its zset. The scripts never leave a job so; this finds what something else did.
-- ARGV: prefix, token, then job ids to look at
-- Returns a flat list of (id, what was done) pairs: 'requeued', 'failed' (poison limit),
-- 'cancelled', 'timed_out', 'rewaited'.
--
-- A job assigned to a worker whose stream no longer holds its entry will never be read there: it
-- goes back among the waiting. A running job without its entry is left alone while its worker
-- lives (the worker records it without the entry); once that worker is gone (released, so no
-- longer in <p>:workers) it is taken back as release.lua would have: it counts as lost. So is any
-- job still held by a worker that is gone, entry or not: nobody reads a released worker's stream.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local ms = clock()
local out = {}

local function take_back(id, jk, st, gone)
  local cancel = redis.call('HGET', jk, 'cancel')
  local deadline = tonumber(redis.call('ZSCORE', P .. ':deadlines', id))
  if cancel == '1' then
    finish(id, 'cancelled', 'exit_code', 130, 'error', 'cancelled (' .. gone .. ')')
    return 'cancelled'
  elseif st == 'running' and deadline and deadline <= ms then
    finish(id, 'timed_out', 'exit_code', 124, 'error', 'watchdog expired while ' .. gone)
    return 'timed_out'
  elseif st == 'running' and redis.call('HINCRBY', jk, 'lost', 1) >= setting('poison_limit') then
    local why = 'lost ' .. redis.call('HGET', jk, 'lost') .. ' times (poison limit); last: ' .. gone
    finish(id, 'failed', 'error', why)
    dead(id, why, '')
    return 'failed'
  end
  requeue(id)
  return 'requeued'
end

for i = 3, #ARGV do
  local id = ARGV[i]
  local jk = jobkey(id)
  local st, w, entry, q, wm, prio = unpack(redis.call('HMGET', jk, 'status', 'worker', 'entry', 'queue', 'wm', 'priority'))
  local what = nil
  if (st == 'assigned' or st == 'running') and w then
    local present = entry and #redis.call('XRANGE', wstream(w), entry, entry) > 0
    local live = redis.call('ZSCORE', P .. ':workers', w)
    if not live or (not present and st == 'assigned') then
      local gone = 'its entry in worker ' .. w .. "'s stream was deleted"
      if present then
        drop_entry(w, entry)
        gone = 'worker ' .. w .. ' had left'
      end
      what = take_back(id, jk, st, gone)
    end
  elseif st == 'queued' and wm and q and not redis.call('ZSCORE', P .. ':waiting:' .. q, wm) then
    waiting_add(q, wm, prio or 0)
    tick_if_waiting()
    what = 'rewaited'
  end
  if what then
    out[#out + 1] = id
    out[#out + 1] = what
  end
end
return out
