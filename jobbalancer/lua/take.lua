-- A worker records the outcomes of a slot's jobs (fenced, complete_job in _lib.lua), then takes up
-- to COUNT new entries from its stream and starts those still its own: one step, one round trip.
-- ARGV: prefix, worker, count, then 9 fields per outcome to record first (none: only a take):
--   id, attempt, entry, status, exit_code, error, result, stdout, stderr
-- Returns {codes, jobs[, last]}: codes, one per outcome, as complete.lua returns them (1 recorded,
-- 2 re-queued for a retry, 0 fenced out); jobs, a flat list of 6 fields per job to run: entry,
-- id, attempt, kind, spec, watchdog. Entries whose job is no longer this worker's are dropped.
-- last, whenever the read ran: the group's last delivered id (the last entry read, or when the
-- read found none, as XINFO GROUPS says), after which the worker's main thread waits for the next
-- entry (XREAD BLOCK, then take.lua again, sent together).
-- Without outcomes a failed read raises (NOGROUP after a reclaim: the worker reopens its stream).
local me = ARGV[2]
local codes, done, recorded = {}, 0, 0
batch_begin()  -- the entries dropped and the statistics are written once for the whole call
for i = 4, #ARGV, 9 do
  local r = complete_job(me, unpack(ARGV, i, i + 8))
  codes[#codes + 1] = r
  if r > 0 then done = done + 1 end
  if r == 1 then recorded = recorded + 1 end
end
batch_flush()
jobs_done(me, done, recorded)
local out = {}
if tonumber(ARGV[3]) < 1 then
  batch_end()
  return {codes, out}
end
-- With outcomes recorded, a failed read (NOGROUP: the stream was reclaimed) must not hide their
-- codes: it reads as nothing taken, and the worker's next plain take raises it.
local read = #codes > 0 and redis.pcall or redis.call
local reply = read('XREADGROUP', 'GROUP', 'worker', me, 'COUNT', ARGV[3], 'STREAMS', wstream(me), '>')
if reply and reply.err then
  batch_end()
  return {codes, out}
end
local found = reply and reply[1][2] or {}
if #found == 0 then
  batch_end()
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', wstream(me))) do
    for i = 1, #g, 2 do
      if g[i] == 'name' and g[i + 1] ~= 'worker' then break end
      if g[i] == 'last-delivered-id' then return {codes, out, g[i + 1]} end
    end
  end
  return {codes, out}
end
for _, e in ipairs(found) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if f.id and start_job(me, f.id, f.attempt or '', e[1]) then
    for _, v in ipairs({e[1], f.id, f.attempt, f.kind or '', f.spec or '', f.watchdog or ''}) do
      out[#out + 1] = v
    end
  elseif not f.id then
    drop_entry(me, e[1])  -- names no job: nothing to run, and it must not hold a slot
  end
end
batch_end()
return {codes, out, found[#found][1]}
