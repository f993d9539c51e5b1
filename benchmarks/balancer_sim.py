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
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis
from sim_fleet import PREFIX, Fleet

from jobbalancer import Client
from jobbalancer.bench.limits import xadd_rate
from jobbalancer.bench.measure import free_port, jb_command
from jobbalancer.job import Options, Spec
from jobbalancer.keys import INBOX_GROUP, Keys
from jobbalancer.server import EmbeddedRedis
from jobbalancer.views import job_events

HERE = Path(__file__).resolve().parent
STAGED = f"{PREFIX}:staged-inbox"
STALL_S = 20.0
SUBMIT_CHUNK = 5000


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
        assigned = [(f["id"], f["worker"]) for _, f in job_events(rows) if f["status"] == "assigned"]
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
