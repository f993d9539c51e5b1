-- Take back every job in a worker's stream: the balancer reclaiming a dead worker (mode "lost"),
-- a worker settling what its previous run left (mode "lost"), or a worker handing its jobs back
-- as it stops (mode "handback"). A lost running job counts towards the poison limit.
-- ARGV: prefix, token ('' when not the balancer), worker, mode, unregister ('1' or '0')
-- Returns {requeued, failed, timed_out, cancelled}.
if not lease_ok(ARGV[2]) then return redis.error_reply('FENCED lease lost') end
local me, mode = ARGV[3], ARGV[4]
local ms = clock()
local counts = {0, 0, 0, 0}
for _, e in ipairs(redis.call('XRANGE', wstream(me), '-', '+')) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  local jk = f.id and jobkey(f.id)
  local st, w, att, cancel = nil, nil, nil, nil
  if jk then st, w, att, cancel = unpack(redis.call('HMGET', jk, 'status', 'worker', 'attempts', 'cancel')) end
  if w == me and att == f.attempt and (st == 'assigned' or st == 'running') then
    local deadline = tonumber(redis.call('ZSCORE', P .. ':deadlines', f.id))
    if cancel == '1' then
      finish(f.id, 'cancelled', 'exit_code', 130, 'error', 'cancelled (worker ' .. me .. ' went away first)')
      counts[4] = counts[4] + 1
    elseif st == 'running' and deadline and deadline <= ms then
      finish(f.id, 'timed_out', 'exit_code', 124, 'error', 'watchdog expired while worker ' .. me .. ' was gone')
      counts[3] = counts[3] + 1
    elseif mode == 'lost' and st == 'running' and redis.call('HINCRBY', jk, 'lost', 1) >= setting('poison_limit') then
      local why = 'lost with its worker ' .. redis.call('HGET', jk, 'lost') .. ' times (poison limit); last: ' .. me
      finish(f.id, 'failed', 'error', why)
      dead(f.id, why, '')
      counts[2] = counts[2] + 1
    else
      requeue(f.id)
      counts[1] = counts[1] + 1
    end
  end
end
if mode == 'lost' then
  for i, outcome in ipairs({'requeued', 'failed', 'timed_out', 'cancelled'}) do stats_count('reclaimed|' .. outcome, counts[i]) end
end
local left = redis.call('XLEN', wstream(me))
if left > 0 then redis.call('HINCRBY', P .. ':freed', me, left) end  -- slots freed (see drop_entry)
redis.call('DEL', wstream(me))
if ARGV[5] == '1' then
  redis.call('ZREM', P .. ':workers', me)
  redis.call('DEL', P .. ':w:' .. me, P .. ':w:' .. me .. ':ctl')
end
return counts
