-- Take prefetched work back from a busy worker so an idle one can have it. Only entries the
-- worker has not read yet (after its group's last-delivered id) are taken, and only jobs of the
-- given queues; each goes back among the waiting, in its old place, never having been delivered.
-- ARGV: prefix, token, worker, max_count, then the queues an idle worker serves
-- Returns how many jobs were taken back.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local donor, max_count = ARGV[3], tonumber(ARGV[4])
local wanted = {}
for i = 5, #ARGV do wanted[ARGV[i]] = true end
local stream = wstream(donor)
local last = '0-0'
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f.name == 'worker' then last = f['last-delivered-id'] end
  end
end
local moved = 0
for _, e in ipairs(redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', max_count)) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  local jk = f.id and jobkey(f.id)
  if jk then
    local st, w, att, q = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'queue'))
    if st == 'assigned' and w == donor and att == f.attempt and wanted[q] then
      redis.call('XDEL', stream, e[1])
      redis.call('HINCRBY', P .. ':freed', donor, 1)  -- a freed slot, as drop_entry counts them
      redis.call('HINCRBY', jk, 'attempts', -1)  -- never delivered: attempts count deliveries
      requeue(f.id)
      moved = moved + 1
    end
  end
end
return moved
