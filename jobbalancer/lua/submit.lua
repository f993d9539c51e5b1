-- Create jobs and hand them to the balancers: any number in one call, 9 arguments each.
-- ARGV: prefix, then per job: id, kind, spec, queue, priority, retries, watchdog, realtime, extra
-- extra, '' for none, else a JSON object with any of:
--   fields = {name = value}   more record fields (result_ttl, meta, schedule, ...)
--   due_at = "<epoch s>"      the job is 'scheduled': only due.lua moves it on (rq-scheduler calls it)
--   deps = [id, ...], after = "all" | "any"   wait for those jobs first (settle_dependents, _lib.lua)
-- Returns one reply per job, in order: 1 when created, 0 when the id already existed (idempotent
-- on the id: an existing job is left as it is), or (creating nothing) 'unknown <dep>' when a
-- dependency has no record, 'cycle <dep>' when an existing job is resubmitted with a dependency
-- that waits for it. A new job cannot close a cycle: its dependencies must exist before it does
-- (earlier in the same call counts). All the jobs of a call get one created_at: one instant.
local _, secs = clock()

local function submit(id, kind, spec, queue, priority, retries, watchdog, realtime, extra_json)
  local jk = jobkey(id)
  local extra = extra_json ~= '' and cjson.decode(extra_json) or {}
  local deps = extra.deps or {}
  if redis.call('EXISTS', jk) == 1 then
    local wanted = {}
    for _, d in ipairs(deps) do wanted[d] = true end
    local seen, todo, i = {[id] = true}, {id}, 1
    while #deps > 0 and i <= #todo do
      for _, d in ipairs(redis.call('SMEMBERS', jobkey(todo[i]) .. ':dependents')) do
        if wanted[d] then return 'cycle ' .. d end
        if not seen[d] then
          seen[d] = true
          todo[#todo + 1] = d
        end
      end
      i = i + 1
    end
    return 0
  end
  local pending, blocker = {}, nil
  for _, d in ipairs(deps) do
    local st, why = unpack(redis.call('HMGET', jobkey(d), 'status', 'error'))
    if not st then return 'unknown ' .. d end
    if not TERMINAL[st] then
      pending[#pending + 1] = d
    elseif st ~= 'succeeded' and extra.after ~= 'any' and not blocker then
      -- name the first job that failed, not the chain of cancels it caused
      blocker = why and string.sub(why, 1, 11) == 'dependency ' and why or ('dependency ' .. d .. ' ' .. st)
    end
  end
  -- One HSET writes the whole record (status first: the field most reads look for), extra.fields
  -- after the standard ones, which they override.
  local fields = {'status', 'queued', 'attempts', '0', 'queue', queue, 'priority', priority, 'kind', kind,
    'watchdog', watchdog, 'realtime', realtime, 'retries', retries, 'created_at', secs, 'spec', spec}
  local function add(name, value)
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  for name, value in pairs(extra.fields or {}) do add(name, value) end
  redis.call('ZADD', P .. ':jobs', secs, id)
  if extra.due_at then
    add('status', 'scheduled')  -- after extra.fields, as it always overrode them
    add('due_at', extra.due_at)
    redis.call('HSET', jk, unpack(fields))
    event(id, 'scheduled', '')
    return 1
  end
  event(id, 'queued', '')
  if #deps > 0 then
    add('depends_on', table.concat(deps, ' '))
    add('after', extra.after or 'all')
  end
  if blocker then
    redis.call('HSET', jk, unpack(fields))
    finish(id, 'cancelled', 'exit_code', 130, 'error', blocker)
    return 1
  end
  if #pending > 0 then
    add('linked', 1)
    redis.call('HSET', jk, unpack(fields))
    for _, d in ipairs(pending) do
      redis.call('SADD', jk .. ':deps', d)
      redis.call('SADD', jobkey(d) .. ':dependents', id)
      redis.call('HSET', jobkey(d), 'linked', 1)
    end
    return 1
  end
  -- the record names its inbox entry (ie), so the audit can tell when the entry was deleted
  add('ie', redis.call('XADD', P .. ':inbox', '*', 'id', id, 'queue', queue, 'priority', priority, 'realtime', realtime))
  redis.call('HSET', jk, unpack(fields))
  return 1
end

if (#ARGV - 1) % 9 ~= 0 then
  return redis.error_reply('ERR submit.lua takes the prefix, then 9 arguments per job; got ' .. (#ARGV - 1))
end
local replies = {}
batch_begin()  -- one event entry for all the jobs queued
for i = 2, #ARGV - 8, 9 do
  replies[#replies + 1] = submit(unpack(ARGV, i, i + 8))
end
batch_end()
return replies
