"""CPU milliseconds per job, by process role, and Redis's cost per job by command.

Starts its own redis-server and `jb up --workers 2` (default settings, or `--set name=value` to
try a live setting), warms the cluster up, then for each batch (no-op calls, `true` commands)
reads every process's CPU time before and after and prints CPU ms per job for: the workers, their
call children (and, for commands, the reaped `true` processes), the balancer, redis-server and
this harness (submit and polling). Redis's `INFO commandstats` is reset before each batch:
calls per job and µs per call of every command and script; with `--scripts`, µs per job of each
Lua script by name (from the slow log, which then logs every command: it adds Redis CPU of its
own, so compare the role figures from runs without it). CPU time moves less than wall time with other
work on the machine, but it does move (contention costs cache misses and wake-ups): compare runs
made one after the other, e.g. the default against `--set prefetch=2`.

    .venv/bin/python benchmarks/cpu_per_job.py [--noop-jobs 5000] [--command-jobs 1000]
        [--set prefetch=2] [--scripts] [--allow-root]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from jobbalancer import Client
from jobbalancer.bench.measure import PREFIX, UpOptions, free_port, jb_up, throughput, warm_up
from jobbalancer.job import Spec
from jobbalancer.scripts import NAMES, source
from jobbalancer.server import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent
SLOWLOG_LEN = 1_000_000
ROLES = ("worker", "worker children", "balancer", "redis", "harness")


def cpu_s(proc: psutil.Process, reaped: bool = False) -> float:
    """User + system CPU seconds of a process; with ``reaped``, only its reaped children's."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return t.children_user + t.children_system if reaped else t.user + t.system


def role_of(proc: psutil.Process) -> str | None:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return None
    if "jobbalancer.worker.child" in cmd:
        return "worker children"
    for role in ("balancer", "worker"):
        if f" {role} " in f"{cmd} ":
            return role
    return None


def snapshot(up: psutil.Process, redis_pid: int) -> dict[str, float]:
    """CPU seconds so far per role. Children that exited are counted through their parent's
    ``children_*`` times (the worker reaps its `true` processes; call children live on)."""
    totals = dict.fromkeys(ROLES, 0.0)
    for proc in up.children(recursive=True):
        role = role_of(proc)
        if role is not None:
            totals[role] += cpu_s(proc)
        if role == "worker":
            totals["worker children"] += cpu_s(proc, reaped=True)
    totals["redis"] = cpu_s(psutil.Process(redis_pid))
    totals["harness"] = cpu_s(psutil.Process())
    return totals


def commandstats(client: Client) -> dict[str, tuple[int, float]]:
    """Calls and µs per call of every command since the last reset."""
    info: Any = client.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(s["calls"]), float(s["usec_per_call"])) for name, s in info.items()}


def script_times(client: Client) -> dict[str, tuple[int, float]]:
    """Calls and total µs of each Lua script (and each other command) from the slow log, which
    logs every command while ``slowlog-log-slower-than`` is 0; a script's time includes its calls."""
    names = {hashlib.sha1(source(name).encode()).hexdigest(): name for name in NAMES}
    totals: dict[str, tuple[int, float]] = {}
    for entry in client.redis.slowlog_get(SLOWLOG_LEN):
        args = [a.decode() if isinstance(a, bytes) else str(a) for a in entry["command"].split()[:2]]
        name = names.get(args[1], "?") + ".lua" if args[0].upper() == "EVALSHA" else args[0].upper()
        calls, usec = totals.get(name, (0, 0.0))
        totals[name] = (calls + 1, usec + float(entry["duration"]))
    return totals


def measure(
    client: Client, up: psutil.Process, redis_pid: int, run: Callable[[], Any], jobs: int, slowlog: bool
) -> None:
    client.redis.config_resetstat()
    if slowlog:  # it costs Redis CPU of its own: off unless asked for
        client.redis.config_set("slowlog-max-len", SLOWLOG_LEN)
        client.redis.config_set("slowlog-log-slower-than", 0)
        client.redis.slowlog_reset()
    before = snapshot(up, redis_pid)
    began = time.monotonic()
    result = run()
    wall = time.monotonic() - began
    after = snapshot(up, redis_pid)
    stats = commandstats(client)
    scripts = script_times(client) if slowlog else {}
    client.redis.config_set("slowlog-log-slower-than", 10_000)
    total = 0.0
    print(f"  {jobs} jobs, {result.rate:,.0f} jobs/s end to end ({wall:.1f} s wall)")
    print("  | role | CPU ms/job |\n  |---|---:|")
    for role in ROLES:
        ms = (after[role] - before[role]) * 1000 / jobs
        total += ms if role != "harness" else 0.0
        print(f"  | {role} | {ms:.3f} |")
    print(f"  | all but the harness | {total:.3f} |")
    print("\n  | Redis command | calls/job | µs/call | µs/job |\n  |---|---:|---:|---:|")
    rows = sorted(stats.items(), key=lambda kv: -kv[1][0] * kv[1][1])
    for name, (calls, usec) in rows:
        if calls >= jobs / 100:
            print(f"  | {name} | {calls / jobs:.2f} | {usec:.1f} | {calls * usec / jobs:.1f} |")
    everything = sum(c * u for c, u in stats.values()) / jobs
    print(f"  | all (a script's own calls are counted in it too) | | | {everything:.1f} |\n")
    if not slowlog:
        return
    print("  | Lua script (slow log; its calls included) | calls/job | µs/call | µs/job |\n  |---|---:|---:|---:|")
    for name, (calls, usec) in sorted(scripts.items(), key=lambda kv: -kv[1][1]):
        if calls >= jobs / 100 and name.endswith(".lua"):
            print(f"  | {name} | {calls / jobs:.2f} | {usec / calls:.1f} | {usec / jobs:.1f} |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--noop-jobs", type=int, default=5000)
    parser.add_argument("--command-jobs", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a live setting")
    parser.add_argument("--scripts", action="store_true", help="µs per job of each Lua script (slow log)")
    parser.add_argument("--allow-root", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jb-cpu-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", free_port()).start()
        try:
            options = UpOptions(paths=[str(REPO / "workers")], allow_root=args.allow_root)
            with jb_up(server.url, Path(tmp) / "up.log", options) as proc:
                client = Client(server.url, PREFIX)
                for item in args.set:
                    name, _, value = item.partition("=")
                    client.redis.hset(client.keys.config, name, value)
                warm_up(client)
                assert server.process is not None
                up, pid = psutil.Process(proc.pid), server.process.pid
                print(f"load average before: {psutil.getloadavg()[0]:.2f} (1 min)\n")
                print("no-op call jobs (tasks:noop):")
                noop = Spec.for_call("tasks:noop")
                measure(
                    client,
                    up,
                    pid,
                    lambda: throughput(client, noop, args.noop_jobs, "no-op"),
                    args.noop_jobs,
                    args.scripts,
                )
                print("`true` command jobs:")
                true = Spec.for_command("true")
                n = args.command_jobs
                measure(client, up, pid, lambda: throughput(client, true, n, "true"), n, args.scripts)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
