-- The balancer's safety net for jobs whose place vanished under them: a worker stream entry that
-- was trimmed or deleted (XTRIM, XDEL, a hand edit) before the job ended, a waiting member
-- removed from its zset, or an inbox entry deleted before a balancer read it. The scripts never
-- leave a job so; this finds what something else did.
-- ARGV: prefix, token, grace_ms, then job ids to look at
-- Returns a flat list of (id, what was done) pairs: 'requeued', 'failed' (poison limit),
-- 'cancelled', 'timed_out', 'rewaited'.
--
-- A job assigned to a worker whose stream no longer holds its entry will never be read there: it
-- goes back among the waiting. A running job without its entry is left alone while its worker
-- lives and says it runs it (the worker records it without the entry); once that worker is gone
-- (released, so no longer in <p>:workers), or is back under the same name without it (written
-- off and woken, or restarted: either way it killed or lost the job), it is taken back as
-- release.lua would have: it counts as lost. So is any job still held by a worker that is gone,
-- entry or not: nobody reads a released worker's stream.
-- A job in the inbox carries its entry's id (field ie, set wherever an entry is added); a queued
-- job with no waiting member, no retry pending and no dependency left whose entry is gone (and
-- older than grace_ms) will never be read by a balancer: it goes among the waiting.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local ms = clock()
local grace_ms = tonumber(ARGV[3])
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

-- A live worker lists the jobs it holds in its heartbeat (field jobs of <p>:w:<name>). A job
-- that started a heartbeat timeout before the worker's last beat and is not listed is not run
-- there any more. A worker that lists nothing (an older version) is taken at its word.
local function not_held(w, id, beat_ms, started)
  local jobs = redis.call('HGET', P .. ':w:' .. w, 'jobs')
  local started_ms = (tonumber(started) or 0) * 1000
  if not jobs or tonumber(beat_ms) - started_ms < setting('heartbeat_timeout') * 1000 then return false end
  return not string.find(' ' .. jobs .. ' ', ' ' .. id .. ' ', 1, true)
end

-- Whether a queued job's inbox entry is gone: it is older than the grace and no longer there.
local function lost_from_inbox(id, jk, ie)
  local at = tonumber(string.match(ie, '^(%d+)-'))
  if not at or ms - at < grace_ms then return false end
  if redis.call('HEXISTS', jk, 'retry_at') == 1 or redis.call('ZSCORE', P .. ':delayed', id) then return false end
  if redis.call('EXISTS', jk .. ':deps') == 1 then return false end
  return #redis.call('XRANGE', P .. ':inbox', ie, ie) == 0
end

for i = 4, #ARGV do
  local id = ARGV[i]
  local jk = jobkey(id)
  local st, w, entry, q, wm, prio, ie, started = unpack(redis.call('HMGET', jk, 'status', 'worker', 'entry',
    'queue', 'wm', 'priority', 'ie', 'started_at'))
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
    elseif not present and not_held(w, id, live, started) then
      -- should the worker run it after all, it kills it; its late report is fenced out anyway
      local att = redis.call('HGET', jk, 'attempts')
      redis.call('XADD', P .. ':w:' .. w .. ':ctl', 'MAXLEN', '~', 1000, '*', 'op', 'cancel', 'id', id, 'attempt', att)
      what = take_back(id, jk, st, 'worker ' .. w .. ' no longer runs it and its stream entry was deleted')
    end
  elseif st == 'queued' and wm and q and not redis.call('ZSCORE', P .. ':waiting:' .. q, wm) then
    waiting_add(q, wm, prio or 0)
    tick_if_waiting()
    what = 'rewaited'
  elseif st == 'queued' and not wm and q and ie and lost_from_inbox(id, jk, ie) then
    requeue(id)
    what = 'requeued'
  end
  if what then
    out[#out + 1] = id
    out[#out + 1] = what
  end
end
return out
