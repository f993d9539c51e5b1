"""The simulated workers of ``balancer_sim.py``: registered hashes and streams, heartbeats every
second, and a fake consumer that frees the slots the balancer fills."""

from __future__ import annotations

import threading

import redis

from jobbalancer.keys import WORKER_GROUP, Keys
from jobbalancer.scripts import Scripts

PREFIX = "sim"
BEAT_EVERY_S = 1.0  # a worker's default heartbeat interval

# The fast consumer: what a completion does to the worker's stream (the three calls of _lib.lua's
# drop_entry: ack, delete, count the freed slot), then the record marked succeeded so the audit
# leaves it alone. Kept small: EVAL hashes the whole text on every call. ARGV: prefix, mode
# ('ids': job ids follow; 'sweep': worker names follow, every entry of their streams is settled).
# Returns {jobs settled, the newest settled entry id}: a settled job counts once (XDEL says so).
FAST_CONSUMER = """
local P, settled, newest = ARGV[1], 0, '0-0'
local function settle(jk, w, e)
  local stream = P .. ':w:' .. w .. ':jobs'
  redis.pcall('XACK', stream, 'worker', e)
  if redis.call('XDEL', stream, e) == 1 then
    redis.call('HINCRBY', P .. ':freed', w, 1)
    redis.call('HSET', jk, 'status', 'succeeded')
    settled = settled + 1
    local a, b = string.match(e, '(%d+)-(%d+)')
    local x, y = string.match(newest, '(%d+)-(%d+)')
    if tonumber(a) > tonumber(x) or (a == x and tonumber(b) > tonumber(y)) then newest = e end
  end
end
for i = 3, #ARGV do
  if ARGV[2] == 'ids' then
    local jk = P .. ':job:' .. ARGV[i]
    local w, e = unpack(redis.call('HMGET', jk, 'worker', 'entry'))
    if w and e then settle(jk, w, e) end
  else
    for _, row in ipairs(redis.call('XRANGE', P .. ':w:' .. ARGV[i] .. ':jobs', '-', '+')) do
      local f = {}
      for j = 1, #row[2], 2 do f[row[2][j]] = row[2][j + 1] end
      if f.id then settle(P .. ':job:' .. f.id, ARGV[i], row[1]) end
    end
  end
end
return {settled, newest}
"""

# heartbeat.lua's writes (the worker's facts, its hash's expiry, its beat in <p>:workers) without
# the shared helpers that make it too long to send with EVAL at every beat.
FAKE_HEARTBEAT = """
local P, me = ARGV[1], ARGV[2]
local t = redis.call('TIME')
redis.call('HSET', P .. ':w:' .. me, 'last_seen', t[1], unpack(ARGV, 4))
redis.call('PEXPIRE', P .. ':w:' .. me, ARGV[3])
redis.call('ZADD', P .. ':workers', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), me)
return 1
"""


class Fleet:
    """The simulated workers: registration, heartbeats every second, and the fake consumer."""

    def __init__(self, r: redis.Redis, count: int, slots: int, consumer: str) -> None:
        self.r, self.keys, self.scripts = r, Keys(PREFIX), Scripts(r)
        self.names = [f"w{n:04d}" for n in range(count)]
        self.slots, self.consumer = slots, consumer
        self.fast = FAST_CONSUMER
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat_loop, daemon=True)

    def register(self) -> None:
        pipe = self.r.pipeline(transaction=False)
        for name in self.names:
            pipe.xgroup_create(self.keys.worker_jobs(name), WORKER_GROUP, id="0", mkstream=True)
        pipe.execute()
        self.beat()
        self._beater.start()

    def beat(self) -> None:
        """One heartbeat per worker: ``heartbeat.lua``'s writes, by a small EVAL (counted as the fleet's)."""
        facts = ["slots", str(self.slots), "queues", "default", "state", "running", "cpu", "1.0", "mem", "10.0"]
        pipe = self.r.pipeline(transaction=False)
        for name in self.names:
            pipe.eval(FAKE_HEARTBEAT, 0, PREFIX, name, 60_000, *facts, "load1", "0.10")
        pipe.execute()

    def _beat_loop(self) -> None:
        while not self._stop.wait(BEAT_EVERY_S):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._beater.is_alive():
            self._beater.join()

    def settle(self, assigned: list[tuple[str, str]]) -> tuple[int, int]:
        """Free the slots of these (job id, worker) assignments; return (settled, newest entry's ms)."""
        if self.consumer == "fast":
            return self._fast("ids", [job_id for job_id, _ in assigned])
        per_worker: dict[str, int] = {}
        for _, worker in assigned:
            per_worker[worker] = per_worker.get(worker, 0) + 1
        taken = self.scripts.many([("take", (PREFIX, worker, n)) for worker, n in per_worker.items()])
        completes, newest = [], 0
        for worker, reply in zip(per_worker, taken, strict=True):  # take.lua: {codes, jobs[, last]}
            flat = reply[1]
            for i in range(0, len(flat), 6):
                entry, job_id, attempt = flat[i : i + 3]
                completes.append(
                    ("complete", (PREFIX, worker, job_id, attempt, entry, "succeeded", "0", "", "", "", ""))
                )
                newest = max(newest, int(entry.split("-")[0]))
        return sum(1 for ok in self.scripts.many(completes) if ok == 1), newest

    def sweep(self) -> tuple[int, int]:
        """Settle whatever the worker streams hold: for assignments whose event was trimmed away
        (``<p>:events`` keeps about 10,000) before the consumer read it."""
        return self._fast("sweep", self.names)

    def _fast(self, mode: str, args: list[str]) -> tuple[int, int]:
        settled, newest = self.r.eval(self.fast, 0, PREFIX, mode, *args)
        return int(settled), int(str(newest).split("-")[0])
