"""``make bench``: jobbalancer side by side with the Python job queues people pick, and the machine's limits.

One command. It starts its own redis-server (an embedded one on a free port, its data in a temp
dir, AOF with ``appendfsync everysec`` as ``jb up`` runs it) and measures, one system at a time on
that Redis emptied (FLUSHALL) before each, several rounds each, start-up never timed:

1. jobbalancer: ``jb up --workers 2`` with default settings; per round the idle-cluster latency
   (submit→start, submit→result), then no-op calls and ``true`` commands in bulk;
2. the machine's limits: pipelined XADDs into Redis, and a bare thread pool running
   ``subprocess.run(["true"])`` at jobbalancer's concurrency (its workers' slots);
3. the peers, installed into ``benchmarks/.peers-venv`` from ``peers/requirements.txt``, each
   driven by ``peers/drive.py`` on the same work: Huey (2 processes), Dramatiq (2 processes × 8
   threads), Celery (prefork, Redis broker and results), rq with ``SimpleWorker`` and with its
   default forking ``Worker`` (2 workers each).

Prints markdown tables of the medians, of the ratios (jobbalancer ÷ each peer and ÷ the machine's
limit) and of the issue's targets, and writes them with the machine's description and every
round's values to ``benchmarks/results.md``.

    python benchmarks/side_by_side.py [--quick] [--rounds N] [--systems jobbalancer,limits,huey,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import redis

from jobbalancer import Client
from jobbalancer.bench.compare import JB, LIMITS, PEERS, Comparison, SystemResult
from jobbalancer.bench.limits import spawn_rate, xadd_rate
from jobbalancer.bench.measure import PREFIX, UpOptions, free_port, jb_up, latency, slots, throughput, warm_up
from jobbalancer.errors import JobBalancerError
from jobbalancer.job import Spec
from jobbalancer.server import EmbeddedRedis

HERE = Path(__file__).resolve().parent
WORKERS_DIR = HERE.parent / "workers"
PEERS_DIR = HERE / "peers"
PEERS_VENV = HERE / ".peers-venv"
REQUIREMENTS = PEERS_DIR / "requirements.txt"
SYSTEMS = (JB, LIMITS, *PEERS)
PEER_TIMEOUT_S = 420.0


@dataclass(frozen=True)
class Plan:
    """How much work each round does."""

    rounds: int
    noop_jobs: int
    true_jobs: int
    latency_jobs: int
    xadd_entries: int


FULL = Plan(rounds=3, noop_jobs=20_000, true_jobs=2_000, latency_jobs=200, xadd_entries=200_000)
QUICK = Plan(rounds=1, noop_jobs=1_000, true_jobs=100, latency_jobs=30, xadd_entries=20_000)
# The slowest peers run a share of the jobs (no-op, true) so that `make bench` ends within 10
# minutes; a few thousand jobs are far past their start-up, so their rate is already steady.
SHARE = {"celery": (0.25, 0.5), "rq-simple": (0.15, 0.5), "rq-fork": (0.025, 0.15)}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_peers_venv() -> Path:
    """The peers' interpreter; creates the venv, or reinstalls when requirements.txt has changed."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements.txt"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"installing the peers into {PEERS_VENV} ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def measure_jb(url: str, plan: Plan, allow_root: bool, log_path: Path) -> tuple[SystemResult, int]:
    """jobbalancer's rounds, and its slots (the concurrency the thread-pool limit uses)."""
    result = SystemResult(JB, f"jobbalancer {version('jobbalancer')}")
    options = UpOptions(workers=2, paths=[str(WORKERS_DIR)], allow_root=allow_root)
    with jb_up(url, log_path, options):
        client = Client(url, PREFIX)
        try:
            warm_up(client)
            total_slots = slots(client)
            result.setup = f"`jb up --workers 2` ({total_slots} slots in all), default settings"
            result.jobs = {"noop_rate": plan.noop_jobs, "true_rate": plan.true_jobs}
            for number in range(1, plan.rounds + 1):
                log(f"  jobbalancer round {number}/{plan.rounds} ...")
                measured = latency(client, plan.latency_jobs)
                noop = throughput(client, Spec.for_call("tasks:noop"), plan.noop_jobs, "no-op call")
                true = throughput(client, Spec.for_command("true"), plan.true_jobs, "`true` command")
                measured |= {"noop_rate": noop.rate, "noop_submit_rate": noop.submit_rate, "true_rate": true.rate}
                result.rounds.append(measured)
        finally:
            client.close()
    return result, total_slots


def measure_limits(url: str, plan: Plan, concurrency: int) -> SystemResult:
    result = SystemResult(LIMITS, "machine limits", jobs={"xadd_rate": plan.xadd_entries, "spawn_rate": plan.true_jobs})
    result.setup = f"pipelined XADDs into the same Redis; a pool of {concurrency} threads running `true`"
    for number in range(1, plan.rounds + 1):
        log(f"  limits round {number}/{plan.rounds} ...")
        result.rounds.append(
            {"xadd_rate": xadd_rate(url, plan.xadd_entries), "spawn_rate": spawn_rate(plan.true_jobs, concurrency)}
        )
    return result


def measure_peer(python: Path, key: str, url: str, plan: Plan, log_path: Path) -> SystemResult:
    noop_share, true_share = SHARE.get(key, (1.0, 1.0))
    argv = [
        str(python), str(PEERS_DIR / "drive.py"), "--system", key, "--url", url,
        "--noop-jobs", str(max(10, int(plan.noop_jobs * noop_share))),
        "--true-jobs", str(max(10, int(plan.true_jobs * true_share))),
        "--rounds", str(plan.rounds), "--log", str(log_path),
    ]  # fmt: skip
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=PEER_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"drive.py exited with {done.returncode}; workers' log: {log_path}")
    reply = json.loads(done.stdout)
    return SystemResult(key, reply["label"], reply["rounds"], reply["jobs"], setup=reply["setup"])


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as r:
        r.flushall()


def run(args: argparse.Namespace, plan: Plan, url: str, log_dir: Path) -> Comparison:
    comparison = Comparison({})
    concurrency = 2 * (os.cpu_count() or 2)  # jb up's: 2 workers, one slot per CPU each
    if JB in args.systems:
        flush(url)
        began = time.monotonic()
        log("jobbalancer ...")
        try:
            comparison.systems[JB], concurrency = measure_jb(url, plan, args.allow_root, log_dir / "jobbalancer.log")
        except (RuntimeError, TimeoutError, JobBalancerError, redis.RedisError) as exc:
            tail = (log_dir / "jobbalancer.log").read_text(errors="replace")[-3000:]
            log(f"jobbalancer failed: {exc}\nlast lines of its log:\n{tail}")
            comparison.systems[JB] = SystemResult(JB, "jobbalancer", error=str(exc))
        log(f"  took {time.monotonic() - began:.0f}s")
    if LIMITS in args.systems:
        flush(url)
        comparison.systems[LIMITS] = measure_limits(url, plan, concurrency)
    peers = [key for key in PEERS if key in args.systems]
    python = ensure_peers_venv() if peers else None
    for key in peers:
        assert python is not None
        flush(url)
        began = time.monotonic()
        log(f"{key} ...")
        try:
            comparison.systems[key] = measure_peer(python, key, url, plan, log_dir / f"{key}.log")
        except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            log(f"{key} failed: {exc}")
            comparison.systems[key] = SystemResult(key, key, error=str(exc))
        log(f"  took {time.monotonic() - began:.0f}s")
    return comparison


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(url: str, load_before: tuple[float, float, float]) -> list[str]:
    with redis.Redis.from_url(url, decode_responses=True) as r:
        version = r.info("server").get("redis_version")
        fsync = r.config_get("appendfsync").get("appendfsync", "?")
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores; {memory_gib:.0f} GiB memory",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, redis-py {redis.__version__}",
        f"- Redis {version}, one for every system, emptied before each (AOF on, appendfsync {fsync})",
        f"- load average before the run: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min); "
        "other work on the machine skews every figure alike only if it is steady",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: 1 round of small batches")
    parser.add_argument("--rounds", type=int, help="rounds per system (default 3, or 1 with --quick)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {','.join(SYSTEMS)}")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--log-dir", type=Path, help="where every system's log goes (default: a temp dir)")
    parser.add_argument("--allow-root", action="store_true", help="let the workers run as root (or JB_ALLOW_ROOT=1)")
    args = parser.parse_args(argv)
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown or not args.systems:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    args.allow_root = args.allow_root or os.environ.get("JB_ALLOW_ROOT") == "1"
    if os.geteuid() == 0 and not args.allow_root and JB in args.systems:
        parser.error("running as root: workers refuse to; pass --allow-root or set JB_ALLOW_ROOT=1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(args.rounds or base.rounds, base.noop_jobs, base.true_jobs, base.latency_jobs, base.xadd_entries)
    started, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jb-bench-") as tmp:
        log_dir = args.log_dir or Path(tmp) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        server = EmbeddedRedis(Path(tmp) / "redis", free_port()).start()
        try:
            comparison = run(args, plan, server.url, log_dir)
            about = machine(server.url, load_before)
        finally:
            server.stop()
    tables = comparison.markdown()
    print("\n".join(tables))
    elapsed = time.monotonic() - started
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python", "benchmarks/side_by_side.py", *(argv if argv is not None else sys.argv[1:])])
    report = ["# Benchmark results", "", f"`{command}`, {stamp}, {elapsed:.0f} s.", "", *about, ""]
    report += ["## Systems", "", *comparison.setups(), "", "## Results", "", *tables, ""]
    report += ["## Every round", "", *comparison.rounds_table(), ""]
    args.output.write_text("\n".join(report) + "\n")
    log(f"written to {args.output} ({elapsed:.0f} s)")
    return 1 if any(system.error for system in comparison.systems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
