-- Shared helpers, prepended to every script by jobbalancer/scripts.py (after a generated
-- DEFAULTS() function). ARGV[1] is always the key prefix; key names follow jobbalancer/keys.py.
if redis.replicate_commands then redis.replicate_commands() end
local P = ARGV[1]

-- Redis's clock: milliseconds (number) and epoch seconds (string with microseconds). Read once
-- per script call: a script is atomic, so all it writes happens at one instant anyway.
local now_ms, now_secs = nil, nil
local function clock()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    now_secs = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
  end
  return now_ms, now_secs
end

-- A live setting (<p>:config, else the default), read once per script call.
local settings = {}
local function setting(name)
  local v = settings[name]
  if v == nil then
    v = tonumber(redis.call('HGET', P .. ':config', name)) or tonumber(DEFAULTS()[name])
    settings[name] = v
  end
  return v
end

local function jobkey(id) return P .. ':job:' .. id end
local function wstream(worker) return P .. ':w:' .. worker .. ':jobs' end

local function lease_ok(token)
  return token == '' or redis.call('GET', P .. ':leader') == token
end

local function dead(id, reason, raw)
  local _, secs = clock()
  redis.call('XADD', P .. ':dead', 'MAXLEN', '~', '100000', '*', 'id', id or '', 'reason', reason, 'raw', raw or '', 'at', secs)
end

-- Writes a batch of jobs (submit.lua, dispatch.lua, take.lua, complete.lua) makes once for all of
-- them: between batch_begin() and batch_end(), drop_entry, the statistics and the events collect
-- here instead of writing at once (XACK and XDEL take many ids; HINCRBYs of one field add up; one
-- event entry names every job that changed to one status on one worker). Every script that opens
-- a batch ends it; others write as they go. A script that fails midway loses what it collected
-- (its writes so far stay): statistics and events are a record of what happened, never the
-- state a decision reads.
local drops, stats_pending = nil, nil

-- Job state changes in <p>:events (capped): each entry names its jobs (ids, space-separated; an id
-- has no spaces), their new status and the worker ('' for none). In a batch, one entry per status
-- and worker, in the order each first appeared; a job with a second change in the same batch
-- writes out what was collected first, so each job's changes keep their order in the stream.
-- (Numbers given to redis.call are formatted with snprintf: constants are passed as strings.)
local events_pending, events_order, events_jobs = nil, nil, nil

local function event_entry(ids, status, worker)
  redis.call('XADD', P .. ':events', 'MAXLEN', '~', '10000', '*', 'ids', ids, 'status', status, 'worker', worker)
end

local function events_flush()
  for _, group in ipairs(events_order) do event_entry(table.concat(group, ' '), group.status, group.worker) end
  events_pending, events_order, events_jobs = {}, {}, {}
end

local function event(id, status, worker)
  worker = worker or ''
  if not events_pending then return event_entry(id, status, worker) end
  if events_jobs[id] then events_flush() end
  events_jobs[id] = true
  local key = status .. ' ' .. worker
  local group = events_pending[key]
  if not group then
    group = {status = status, worker = worker}
    events_pending[key] = group
    events_order[#events_order + 1] = group
  end
  group[#group + 1] = id
end

-- Ack entries of a worker's stream in its group, then delete them. The group may be gone when the
-- stream was reclaimed, hence pcall. A deleted entry is a freed slot: counted in <p>:freed, which
-- the balancer reads and clears each pass instead of every stream's length.
local function drop_entries(worker, entries)
  local stream = wstream(worker)
  for s = 1, #entries, 1000 do  -- in slices: unpack's stack limit
    local last = math.min(s + 999, #entries)
    redis.pcall('XACK', stream, 'worker', unpack(entries, s, last))
    local n = redis.call('XDEL', stream, unpack(entries, s, last))
    if n > 0 then redis.call('HINCRBY', P .. ':freed', worker, n) end
  end
end

-- Drop one entry of a worker's stream (at once, or with its batch).
local function drop_entry(worker, entry)
  if not entry or entry == '' then return end
  if not drops then return drop_entries(worker, {entry}) end
  local list = drops[worker]
  if not list then
    list = {}
    drops[worker] = list
  end
  list[#list + 1] = entry
end

-- Add n to a field of <p>:stats (at once, or with the batch).
local function stats_add(field, n)
  if stats_pending then
    stats_pending[field] = (stats_pending[field] or 0) + n
  else
    redis.call('HINCRBY', P .. ':stats', field, n)
  end
end

local function batch_begin() drops, stats_pending, events_pending, events_order, events_jobs = {}, {}, {}, {}, {} end

-- Write what the batch collected so far; the batch stays open.
local function batch_flush()
  for worker, entries in pairs(drops) do drop_entries(worker, entries) end
  for field, n in pairs(stats_pending) do redis.call('HINCRBY', P .. ':stats', field, n) end
  events_flush()
  drops, stats_pending = {}, {}
end

local function batch_end()
  batch_flush()
  drops, stats_pending, events_pending, events_order, events_jobs = nil, nil, nil, nil, nil
end

-- A freed slot or a newly waiting job wakes the balancer through a tick in its inbox. One tick
-- per balancer pass is enough: the flag <p>:tick is cleared by each pass's snapshot.
local function tick_if_waiting()
  if redis.call('SCARD', P .. ':waitq') > 0 and redis.call('SET', P .. ':tick', '1', 'NX') then
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

-- A job's arrival sequence number as its waiting member starts with it: zero-padded, so that
-- members sort as the numbers do.
local function seq_text(n) return string.format('%016d', n) end

-- A job's member in its waiting zset: its arrival sequence (kept for life, so a job put back
-- regains its place) and its id. Equal scores sort by member, which makes each priority FIFO.
local function waiting_member(jk, id)
  local seq = redis.call('HGET', jk, 'seq')
  if not seq then
    seq = seq_text(redis.call('INCR', P .. ':seq'))
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

-- A failed attempt's retry: at once (requeue), or after the job's backoff: base * 2^(failures-1)
-- seconds, capped at backoff_max, with "equal jitter" (between half and all of it; the entropy is
-- Redis's clock, as math.random is seeded alike in every script). Meanwhile the job is 'queued'
-- with retry_at set and sits in <p>:delayed, from which the leader requeues it (delayed.lua).
local function retry_later(id, failures)
  local jk = jobkey(id)
  local base, cap = unpack(redis.call('HMGET', jk, 'backoff', 'backoff_max'))
  base = tonumber(base) or 0
  if base <= 0 then return requeue(id) end
  local full_ms = 1000 * math.min(tonumber(cap) or 300, base * 2 ^ (failures - 1))
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local due = now_ms + math.floor(full_ms / 2 + full_ms / 2 * (tonumber(t[2]) % 1000) / 1000)
  redis.call('HSET', jk, 'status', 'queued', 'retry_at', due)
  redis.call('HDEL', jk, 'worker', 'entry', 'started_at', 'cancel', 'wm')
  redis.call('ZREM', P .. ':deadlines', id)
  redis.call('ZADD', P .. ':delayed', due, id)
  event(id, 'queued', '')
end

-- A failed job is copied to the dead letters when it had retries and spent them all, or when the
-- worker could not parse it (the worker words that error "invalid job: ...").
local function dead_if_spent(id, retries, err)
  local n = tonumber(retries) or 0
  if n > 0 then
    dead(id, 'failed after ' .. n .. ' retries: ' .. (err or ''), '')
  elseif string.sub(err or '', 1, 12) == 'invalid job:' then
    dead(id, err, redis.call('HGET', jobkey(id), 'spec') or '')
  end
end

-- Dependencies (see submit.lua): a job submitted with depends_on stays queued but in no inbox or
-- waiting set while <p>:job:<id>:deps holds the ids it still waits for; each of those names it
-- in its <p>:job:<dep>:dependents. Both jobs carry linked=1, so finish() settles only them.
-- When a dependency finishes, a dependent drops it and enters the inbox once none is left; a
-- dependency that did not succeed cancels the dependent instead (after=any: it runs anyway).
-- That cancel finishes the dependent, which settles its own dependents: the work list keeps the
-- cascade a loop, not a recursion, so a chain of any length fits in one script.
local settling = nil
local function settle_dependents(id, status, finish_fn)
  redis.call('DEL', jobkey(id) .. ':deps')
  if settling then
    settling[#settling + 1] = {id, status}
    return
  end
  settling = {{id, status}}
  local i = 1
  while i <= #settling do
    local pid, pst = settling[i][1], settling[i][2]
    local dk = jobkey(pid) .. ':dependents'
    for _, d in ipairs(redis.call('SMEMBERS', dk)) do
      local djk = jobkey(d)
      local st, after, q, prio, rt = unpack(redis.call('HMGET', djk, 'status', 'after', 'queue', 'priority', 'realtime'))
      if st == 'queued' and redis.call('SREM', djk .. ':deps', pid) == 1 then
        if pst ~= 'succeeded' and after ~= 'any' then
          -- name the first job that failed, not the chain of cancels it caused
          local why = redis.call('HGET', jobkey(pid), 'error') or ''
          if string.sub(why, 1, 11) ~= 'dependency ' then why = 'dependency ' .. pid .. ' ' .. pst end
          finish_fn(d, 'cancelled', 'exit_code', 130, 'error', why)
        elseif redis.call('SCARD', djk .. ':deps') == 0 then
          redis.call('HSET', djk, 'ie', redis.call('XADD', P .. ':inbox', '*', 'id', d, 'queue', q, 'priority', prio, 'realtime', rt))
        end
      end
    end
    redis.call('DEL', dk)
    i = i + 1
  end
  settling = nil
end

-- Statistics for /metrics and the dashboard's history, in the hash <p>:stats (jobbalancer/stats.py
-- reads it; keep the field names and bucket bounds in step). stats_finished costs a finished job
-- one HINCRBY (never started) or two (it ran): its run time's duration bucket (not cumulative)
-- and the sum of run times in ms, as fields '<queue>|<status>|<le>' and '<queue>|<status>|ms'.
local DURATION_BUCKETS = {'0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '300', '900', '3600', '14400'}
local function stats_finished(queue, status, started_at, secs)
  local field = (queue or '') .. '|' .. status .. '|'
  local start = tonumber(started_at)
  if not start then
    stats_add(field .. 'nr', 1)
    return
  end
  local s = math.max(0, tonumber(secs) - start)
  local le = '+Inf'
  for _, bound in ipairs(DURATION_BUCKETS) do
    if s <= tonumber(bound) then le = bound break end
  end
  stats_add(field .. le, 1)
  stats_add(field .. 'ms', math.floor(s * 1000 + 0.5))
end
-- Rare events, one field each: 'watchdog|<by>' (a job's watchdog killed it: by its worker, or by
-- the balancer's overdue backstop) and 'reclaimed|<outcome>' (jobs taken back from a lost worker).
local function stats_count(field, n)
  if n > 0 then stats_add(field, n) end
end

-- Record a terminal status with extra field/value pairs; start the record's TTL (the job's own
-- result_ttl if it has one, -1 meaning keep it); wake waiters; settle its dependents.
-- finish_row takes the record's FINISH_FIELDS already read (complete_job reads them with its own).
local FINISH_FIELDS = {'worker', 'result_ttl', 'linked', 'queue', 'started_at', 'watchdog'}
local finish
local function finish_row(id, row, status, ...)
  local jk = jobkey(id)
  local _, secs = clock()
  local worker, own_ttl, linked, queue, started, wd = row[1], row[2], row[3], row[4], row[5], row[6]
  stats_finished(queue, status, started, secs)
  local ttl = tonumber(own_ttl) or setting('result_ttl')
  redis.call('HSET', jk, 'status', status, 'finished_at', secs, ...)
  redis.call('HDEL', jk, 'wm', 'entry', 'cancel', 'seq', 'retry_at')
  if ttl >= 0 then redis.call('EXPIRE', jk, ttl) end
  -- only a job with a watchdog gets a deadline (start_job); overdue.lua drops strays anyway
  if wd and wd ~= '' then redis.call('ZREM', P .. ':deadlines', id) end
  local out = jk .. ':out'
  if redis.call('EXISTS', out) == 1 then
    redis.call('XADD', out, '*', 'end', status)
    if ttl >= 0 then redis.call('EXPIRE', out, ttl) end
  end
  event(id, status, worker)
  if linked then settle_dependents(id, status, finish) end
end

finish = function(id, status, ...)
  return finish_row(id, redis.call('HMGET', jobkey(id), unpack(FINISH_FIELDS)), status, ...)
end

-- A job's watchdog deadline (Redis ms) if it started at ms; nil without a watchdog. A record
-- field that is not a positive number (written by hand, or by a client of its own) means none,
-- as the worker reads the entry's copy: it must not fail the script that starts the job.
local function deadline_ms(wd, ms)
  local s = tonumber(wd)
  if s and s > 0 then return ms + math.floor(s * 1000) end
  return nil
end

-- A worker starts a job read from its stream, if the job is still its own at that attempt
-- (not cancelled, not taken back); otherwise the entry is dropped. Returns true to run it.
local function start_job(me, id, attempt, entry)
  local jk = jobkey(id)
  local st, w, att, wd = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'watchdog'))
  if st == 'assigned' and w == me and att == attempt then
    local ms, secs = clock()
    redis.call('HSET', jk, 'status', 'running', 'started_at', secs)
    local due = deadline_ms(wd, ms)
    if due then redis.call('ZADD', P .. ':deadlines', due, id) end
    event(id, 'running', me)
    return true
  end
  drop_entry(me, entry)
  return false
end

-- A worker records the outcome of one attempt, fenced: only the worker that owns the job at that
-- attempt may write it (complete.lua for one outcome; take.lua for a slot's batch). A failed
-- attempt with retries left goes back to waiting (after its backoff: retry_later); a failed job
-- that spent its retries, or that the worker could not even parse, is also copied to the dead
-- letters. Returns 1 recorded, 2 re-queued for a retry, 0 fenced out (nothing written). The caller
-- then calls jobs_done once for all it recorded, which counts them and wakes the balancer.
local OUTCOME_FIELDS = {'exit_code', 'error', 'result', 'stdout', 'stderr'}
-- One HMGET for the fence and finish_row: FINISH_FIELDS first (worker is row[1]), then these. A
-- field a record lacks costs a walk of the whole record: retries and failures (often absent) are
-- read only for a failed attempt.
local COMPLETE_FIELDS = {'worker', 'result_ttl', 'linked', 'queue', 'started_at', 'watchdog', 'status', 'attempts'}
local function complete_job(me, id, attempt, entry, status, ...)
  local values = {...}
  local jk = jobkey(id)
  drop_entry(me, entry)
  local row = redis.call('HMGET', jk, unpack(COMPLETE_FIELDS))
  local w, st, att = row[1], row[7], row[8]
  if not (w == me and att == attempt and (st == 'running' or st == 'assigned')) then return 0 end
  local retries, failures = nil, nil
  if status == 'failed' then retries, failures = unpack(redis.call('HMGET', jk, 'retries', 'failures')) end
  local extra = {}
  for i, name in ipairs(OUTCOME_FIELDS) do
    if values[i] and values[i] ~= '' then
      extra[#extra + 1] = name
      extra[#extra + 1] = values[i]
    end
  end
  if status == 'failed' and (tonumber(failures) or 0) < (tonumber(retries) or 0) then
    local n = redis.call('HINCRBY', jk, 'failures', 1)
    if #extra > 0 then redis.call('HSET', jk, unpack(extra)) end
    retry_later(id, n)
    return 2
  end
  finish_row(id, row, status, unpack(extra))
  if status == 'failed' then dead_if_spent(id, retries, values[2]) end
  if status == 'timed_out' then stats_count('watchdog|worker', 1) end  -- its worker's watchdog fired
  return 1
end

-- After complete_job: count the worker's jobs done (recorded or re-queued) and, if any job was
-- recorded (its slot is free and nothing of it comes back), wake the balancer when jobs wait.
local function jobs_done(me, done, recorded)
  local wk = P .. ':w:' .. me
  if done > 0 and redis.call('EXISTS', wk) == 1 then redis.call('HINCRBY', wk, 'jobs_done', done) end
  if recorded > 0 then tick_if_waiting() end
end

local TERMINAL = {succeeded = true, failed = true, timed_out = true, cancelled = true, rejected = true}
