-- A worker takes up to COUNT new entries from its stream and starts those still its own, in one
-- step: the read (through its consumer group) and the starts are one round trip.
-- ARGV: prefix, worker, count
-- Returns a flat list of 6 fields per job to run: entry, id, attempt, kind, spec, watchdog.
-- Entries whose job is no longer this worker's are dropped, not returned.
local me = ARGV[2]
local reply = redis.call('XREADGROUP', 'GROUP', 'worker', me, 'COUNT', ARGV[3], 'STREAMS', wstream(me), '>')
local out = {}
if not reply then return out end
for _, e in ipairs(reply[1][2]) do
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
return out
