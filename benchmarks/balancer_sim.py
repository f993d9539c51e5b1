"""The balancer alone: assignments per second and CPU per assignment, 1 to 1,000 simulated workers.

Starts its own redis-server. For each worker count and round: registers the simulated workers
(heartbeats once a second, as a worker sends them: ``heartbeat.lua``'s writes; each with its
stream and group), submits N no-op call jobs with ``Client.submit_many`` and parks the inbox under another
key, starts a real ``jb balancer`` process, waits until it leads, then puts the inbox back in one
``RENAME`` and times the balancer placing the backlog. A fake consumer frees the slots: it follows
``<p>:events`` and, for each ``assigned`` event, either

- ``--consumer fast`` (the default): drops the job's stream entry as ``_lib.lua``'s ``drop_entry``
  does (ack, delete, and the freed slot counted in ``<p>:freed``: what a completion does to the
  stream), and marks the record succeeded, one small ``EVAL`` per batch; or
- ``--consumer real``: runs ``take.lua`` and ``complete.lua`` as a worker would (``EVALSHA``).

Reported per worker count (medians over the rounds): assignments/s (jobs / (Redis time of the
last ``assigned`` event - Redis time just before the ``RENAME``)), the balancer process's CPU
(user + system, psutil) per assignment, redis-server's CPU per assignment (``INFO cpu``; it
includes the fake fleet's commands: ``fleet`` is the time Redis spent in the fleet's ``EVAL`` and
``XREAD`` commands, from ``INFO commandstats``, so ``redis - fleet`` is what the balancer cost
Redis, roughly), and the growth ratio: CPU per assignment (balancer + Redis minus fleet) over its
value with one worker.

    .venv/bin/python benchmarks/balancer_sim.py [--workers 1,10,100,1000] [--jobs 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from jobbalancer import Client
from jobbalancer.bench.limits import xadd_rate
from jobbalancer.bench.measure import free_port, jb_command
from jobbalancer.job import Options, Spec
from jobbalancer.keys import INBOX_GROUP, WORKER_GROUP, Keys
from jobbalancer.scripts import Scripts
from jobbalancer.server import EmbeddedRedis

HERE = Path(__file__).resolve().parent
PREFIX = "sim"
STAGED = f"{PREFIX}:staged-inbox"
BEAT_EVERY_S = 1.0  # a worker's default heartbeat interval
STALL_S = 20.0
SUBMIT_CHUNK = 5000

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


@dataclass
class Round:
    workers: int
    slots: int
    assigned: int
    waited: int
    seconds: float
    balancer_us: float
    redis_us: float
    fleet_us: float
    xadds: float  # the machine's pipelined XADDs/s into this Redis, measured just before the round
    submit_us: float  # redis-server CPU per job while the backlog was submitted (for sizing)

    @property
    def rate(self) -> float:
        return self.assigned / self.seconds

    @property
    def cost_us(self) -> float:
        """CPU per assignment spent on the balancer's behalf: its process plus its share of Redis."""
        return self.balancer_us + max(0.0, self.redis_us - self.fleet_us)


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
        pipe = self.r.pipeline(transaction=False)
        for worker, n in per_worker.items():
            self.scripts.take(PREFIX, worker, n, client=pipe)
        taken = self.scripts.execute(pipe)
        pipe, newest = self.r.pipeline(transaction=False), 0
        for worker, (_codes, flat) in zip(per_worker, taken, strict=True):  # take.lua: {codes, jobs}
            for i in range(0, len(flat), 6):
                entry, job_id, attempt = flat[i : i + 3]
                args = [job_id, attempt, entry, "succeeded", "0", "", "", "", ""]
                self.scripts.complete(PREFIX, worker, *args, client=pipe)
                newest = max(newest, int(entry.split("-")[0]))
        return sum(1 for ok in self.scripts.execute(pipe) if ok == 1), newest

    def sweep(self) -> tuple[int, int]:
        """Settle whatever the worker streams hold: for assignments whose event was trimmed away
        (``<p>:events`` keeps about 10,000) before the consumer read it."""
        return self._fast("sweep", self.names)

    def _fast(self, mode: str, args: list[str]) -> tuple[int, int]:
        settled, newest = self.r.eval(self.fast, 0, PREFIX, mode, *args)
        return int(settled), int(str(newest).split("-")[0])


def cpu_seconds(r: redis.Redis) -> float:
    info: Any = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def fleet_seconds(r: redis.Redis) -> float:
    stats: Any = r.info("commandstats")
    return sum(float(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in ("eval", "xread")) / 1e6


def redis_now_ms(r: redis.Redis) -> int:
    secs, micros = r.time()
    return int(secs) * 1000 + int(micros) // 1000


def submit_backlog(r: redis.Redis, url: str, jobs: int) -> None:
    """N no-op calls through the real submit path, then the inbox parked under another key."""
    client = Client(url, PREFIX)
    spec = Spec.for_call("tasks:noop")
    for start in range(0, jobs, SUBMIT_CHUNK):
        client.submit_many((spec, Options()) for _ in range(min(SUBMIT_CHUNK, jobs - start)))
    r.rename(client.keys.inbox, STAGED)
    r.xgroup_create(STAGED, INBOX_GROUP, id="0")
    client.redis.close()


def start_balancer(url: str, policy: str, log: Path, profile: Path | None) -> subprocess.Popen[bytes]:
    jb = [sys.executable, "-m", "pyinstrument", "-o", str(profile), "-m", "jobbalancer"] if profile else jb_command()
    args = [*jb, "--redis", url, "--prefix", PREFIX, "balancer", "--policy", policy]
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_leading(r: redis.Redis, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    keys = Keys(PREFIX)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"jb balancer exited with {proc.returncode}")
        if r.exists(keys.leader) and r.exists(keys.inbox):
            groups: Any = r.xinfo_groups(keys.inbox)
            if any(g["name"] == INBOX_GROUP for g in groups):
                return
        time.sleep(0.05)
    raise SystemExit("jb balancer did not lead within 20 s")


def consume(r: redis.Redis, fleet: Fleet, jobs: int, since_ms: int) -> int:
    """Settle assignments as their events arrive until ``jobs`` were; return the newest one's ms."""
    keys, last_id, done, last_ms = Keys(PREFIX), f"{since_ms}-0", 0, since_ms
    quiet_since = time.monotonic()
    while done < jobs:
        reply: Any = r.xread({keys.events: last_id}, count=20_000, block=100)
        rows = reply[0][1] if reply else []
        assigned = [(f["id"], f["worker"]) for _, f in rows if f.get("status") == "assigned"]
        if rows:
            last_id = rows[-1][0]
        settled, newest = fleet.settle(assigned) if assigned else (0, 0)
        if not settled and time.monotonic() - quiet_since > 0.5:
            settled, newest = fleet.sweep()  # events trimmed before we read them
        if settled:
            done, last_ms, quiet_since = done + settled, max(last_ms, newest), time.monotonic()
        elif time.monotonic() - quiet_since > STALL_S:
            raise SystemExit(f"no assignment for {STALL_S}s after {done} of {jobs}: see the balancer log")
    return last_ms


def run_round(embedded: EmbeddedRedis, workers: int, args: argparse.Namespace, log: Path) -> Round:
    r = redis.Redis.from_url(embedded.url, decode_responses=True)
    r.flushall()
    xadds = xadd_rate(embedded.url, 100_000)
    fleet = Fleet(r, workers, max(1, args.slots_total // workers), args.consumer)
    fleet.register()
    before_submit = cpu_seconds(r)
    submit_backlog(r, embedded.url, args.jobs)
    submit_us = (cpu_seconds(r) - before_submit) * 1e6 / args.jobs
    proc = start_balancer(embedded.url, args.policy, log, args.profile)
    try:
        wait_leading(r, proc)
        time.sleep(0.3)  # past the first passes of its term (the fleet read whole)
        balancer = psutil.Process(proc.pid)
        r.config_resetstat()
        cpu0, redis0, t0 = balancer.cpu_times(), cpu_seconds(r), redis_now_ms(r)
        r.rename(STAGED, Keys(PREFIX).inbox)
        t1 = consume(r, fleet, args.jobs, t0)
        cpu1, redis1, fleet_s = balancer.cpu_times(), cpu_seconds(r), fleet_seconds(r)
    finally:
        fleet.stop()
        proc.terminate()
        proc.wait(15)
    per = 1e6 / args.jobs
    return Round(
        workers=workers,
        slots=fleet.slots,
        assigned=args.jobs,
        waited=int(r.get(f"{PREFIX}:seq") or 0),
        seconds=max(t1 - t0, 1) / 1000,
        balancer_us=(cpu1.user + cpu1.system - cpu0.user - cpu0.system) * per,
        redis_us=(redis1 - redis0) * per,
        fleet_us=fleet_s * per,
        xadds=xadds,
        submit_us=submit_us,
    )


def median(rounds: list[Round], attr: str) -> float:
    return float(statistics.median(getattr(x, attr) for x in rounds))


def table(results: dict[int, list[Round]]) -> list[str]:
    """Medians per worker count; growth is the balancer's cost over its cost with the fewest workers."""
    base = median(results[min(results)], "cost_us")
    lines = [
        "| workers | slots each | assignments/s | balancer CPU µs/assignment | redis CPU µs/assignment "
        "| of which fleet | balancer's cost µs | growth | bound 1 + log10(workers) | jobs that waited "
        "| machine: pipelined XADDs/s | redis CPU µs/job at submit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, rounds in results.items():
        cost = median(rounds, "cost_us")
        lines.append(
            f"| {workers:,} | {rounds[0].slots} | {median(rounds, 'rate'):,.0f} "
            f"| {median(rounds, 'balancer_us'):.1f} | {median(rounds, 'redis_us'):.1f} "
            f"| {median(rounds, 'fleet_us'):.1f} | {cost:.1f} | {cost / base:.2f} | {1 + math.log10(workers):.2f} "
            f"| {median(rounds, 'waited'):,.0f} | {median(rounds, 'xadds'):,.0f} | {median(rounds, 'submit_us'):.1f} |"
        )
    return lines


def targets(results: dict[int, list[Round]]) -> list[str]:
    """Issue 4's balancer targets, judged on this run."""
    lines = []
    if 100 in results:
        rate = median(results[100], "rate")
        lines.append(
            f"- 50,000 assignments/s with 100 workers: {'met' if rate >= 50_000 else 'MISSED'} ({rate:,.0f}/s)"
        )
    if 1 in results and 1000 in results:
        growth = median(results[1000], "cost_us") / median(results[1], "cost_us")
        verdict = "met" if growth <= 1 + math.log10(1000) else "MISSED"
        lines.append(f"- cost per assignment, 1,000 workers over 1: {growth:.2f} (log bound 4.00): {verdict}")
    return lines


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def describe() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {cpu_model()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average before the run {load} (other work on the "
        "machine raises every CPU figure: compare within one run)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,10,100,1000", help="comma-separated worker counts")
    parser.add_argument("--jobs", type=int, default=30_000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots-total", type=int, default=10_000, help="slots over all workers (at least 1 each)")
    parser.add_argument("--consumer", choices=("fast", "real"), default="fast")
    parser.add_argument("--policy", default="least-loaded")
    parser.add_argument("--output", type=Path, default=HERE / "balancer-results.md")
    parser.add_argument("--log", type=Path, help="the balancers' log [default: a temp file]")
    parser.add_argument(
        "--profile", type=Path, help="run the balancer under pyinstrument (pip install it), report here"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, machine = parse_args(argv), describe()
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="jb-balancer-sim-") as tmp:
        log = args.log or Path(tmp) / "balancer.log"
        embedded = EmbeddedRedis(Path(tmp) / "redis", free_port()).start()
        try:
            results: dict[int, list[Round]] = {}
            for workers in counts:
                for n in range(args.rounds):
                    one = run_round(embedded, workers, args, log)
                    results.setdefault(workers, []).append(one)
                    print(
                        f"{workers} workers, round {n + 1}: {one.rate:,.0f} assignments/s, balancer "
                        f"{one.balancer_us:.1f} µs, redis {one.redis_us:.1f} µs (fleet {one.fleet_us:.1f})",
                        file=sys.stderr,
                    )
        finally:
            embedded.stop()
    head = f"Balancer simulation: {args.jobs:,} jobs a round, {args.rounds} rounds, consumer {args.consumer}"
    head += f", policy {args.policy}, {args.slots_total:,} slots in all"
    text = "\n".join([f"# {head}", "", machine, "", *table(results), "", *targets(results), ""])
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
