"""Core benchmark: throughput and latency of a local ``jb up`` cluster, measured with the Python API.

Starts its own ``jb up --workers 2`` (an embedded Redis on a free port, its data in a temp dir),
waits until the workers have registered, then for each round measures:

- no-op calls: 5,000 ``tasks:noop`` call jobs submitted in bulk, then drained;
- ``true`` commands: 1,000 ``true`` command jobs submitted in bulk, then drained;
- latency: 200 no-op calls one after the other on the idle cluster: submit->start from the
  records (started_at - created_at, both written by Redis's clock) and submit->result as the
  client sees it (wall time around ``enqueue`` and ``result()``).

Throughput is jobs / (last finished_at - first created_at), both from the records. Start-up is
not timed. Prints a markdown table of every round and the medians, writes it with a description
of the machine to ``benchmarks/results.md``, and stops the cluster on exit.

    python benchmarks/core.py [--rounds 3] [--workers 2] [--concurrency C]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis

from jobbalancer import Client
from jobbalancer.errors import JobBalancerError
from jobbalancer.job import Options, Record, Spec, Status
from jobbalancer.keys import Keys

HERE = Path(__file__).resolve().parent
WORKERS_DIR = HERE.parent / "workers"
PREFIX = "jb"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05


# What one round measured, by key: every rate in jobs/s, every latency in ms.
Round = dict[str, float]

# (key, label) in the order the table shows them.
MEASURES = [
    ("noop_rate", "no-op call jobs/s"),
    ("noop_submit_rate", "  their submit rate (pipelined), jobs/s"),
    ("true_rate", "`true` command jobs/s"),
    ("true_submit_rate", "  their submit rate (pipelined), jobs/s"),
    ("start_p50", "submit→start p50, ms"),
    ("start_p99", "submit→start p99, ms"),
    ("result_p50", "submit→result p50 (no-op call), ms"),
    ("result_p99", "submit→result p99 (no-op call), ms"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jb_command() -> list[str]:
    """The ``jb`` entry point next to this interpreter, else ``python -m jobbalancer``."""
    script = Path(sys.executable).parent / "jb"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobbalancer"]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


@contextlib.contextmanager
def cluster(args: argparse.Namespace, log_path: Path) -> Iterator[str]:
    """Run ``jb up`` on a free port in a temp dir; yield its Redis URL; stop it like Ctrl-C would."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    argv = [*jb_command(), "--redis", url, "--prefix", PREFIX, "up", "--workers", str(args.workers)]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.allow_root:
        argv.append("--allow-root")
    with tempfile.TemporaryDirectory(prefix="jb-bench-") as data_dir, log_path.open("wb") as log:
        argv += ["--data-dir", str(Path(data_dir) / "redis")]
        # Workers import the example tasks from workers/; PYTHONPATH reaches every child jb up starts.
        env = {
            **os.environ,
            "JB_REDIS_URL": url,
            "JB_PREFIX": PREFIX,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(WORKERS_DIR), os.environ.get("PYTHONPATH")])),
        }
        proc = subprocess.Popen(
            argv, cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_workers(proc, url, args.workers)
            yield url
        finally:
            stop(proc, url)


def wait_for_workers(proc: subprocess.Popen[bytes], url: str, workers: int) -> None:
    keys = Keys(PREFIX)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"`jb up` exited with {proc.returncode} before the cluster was ready")
        try:
            with redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=0.5) as r:
                return bool(r.zcard(keys.workers) >= workers and r.exists(keys.leader))
        except redis.RedisError:
            return False

    wait_until(ready, START_TIMEOUT_S, f"{workers} workers and a balancer")


def stop(proc: subprocess.Popen[bytes], url: str) -> None:
    """SIGINT to jb up's process group, as a terminal's Ctrl-C; escalate if it does not stop."""
    for sig, grace_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    # The embedded Redis runs in a session of its own; if jb up could not stop it, this does.
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url, socket_connect_timeout=0.5) as r:
        r.shutdown(nosave=True)


def records(client: Client, ids: Sequence[str]) -> list[Record]:
    pipe = client.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(client.keys.job(job_id))
    return [Record.from_hash(job_id, raw) for job_id, raw in zip(ids, pipe.execute(), strict=True)]


def drain(client: Client, ids: Sequence[str], timeout_s: float) -> list[Record]:
    """Wait until every job has finished; jobs finish roughly in order, so poll the oldest first."""
    pending, done = list(ids), []
    deadline = time.monotonic() + timeout_s
    while pending:
        batch = records(client, pending[:500])
        finished = [rec for rec in batch if rec.finished]
        done += finished
        finished_ids = {rec.id for rec in finished}
        pending = [job_id for job_id in pending if job_id not in finished_ids]
        if len(finished) < len(batch):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(ids)} jobs still unfinished after {timeout_s:.0f}s")
            time.sleep(POLL_S)
    return done


def throughput(client: Client, spec: Spec, count: int, what: str) -> tuple[float, float]:
    """Submit ``count`` jobs in one pipelined batch and drain them; returns (jobs/s, submit jobs/s)."""
    jobs = client.submit_many((spec, Options()) for _ in range(count))
    done = drain(client, [job.id for job in jobs], timeout_s=max(120.0, count / 10))
    failed = [rec for rec in done if rec.status is not Status.SUCCEEDED]
    if failed:
        raise RuntimeError(f"{len(failed)} {what} jobs did not succeed; first: {failed[0].to_dict()}")
    first = min(rec.created_at or 0.0 for rec in done)
    last_created = max(rec.created_at or 0.0 for rec in done)
    last = max(rec.finished_at or 0.0 for rec in done)
    submit_rate = count / (last_created - first) if last_created > first else float("inf")
    return count / (last - first), submit_rate


def percentile(values: Sequence[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def latency(client: Client, count: int) -> dict[str, float]:
    """Run ``count`` no-op calls one at a time; submit->start from the records, submit->result as seen here."""
    start_ms, result_ms = [], []
    for _ in range(count):
        began = time.perf_counter()
        job = client.enqueue("tasks:noop")
        job.result(timeout=30)
        result_ms.append((time.perf_counter() - began) * 1000)
        rec = job.record()
        start_ms.append(((rec.started_at or 0.0) - (rec.created_at or 0.0)) * 1000)
    return {
        "start_p50": percentile(start_ms, 50),
        "start_p99": percentile(start_ms, 99),
        "result_p50": percentile(result_ms, 50),
        "result_p99": percentile(result_ms, 99),
    }


def run_round(client: Client, args: argparse.Namespace) -> Round:
    """Latency first, while the cluster is idle; then the two bulk runs."""
    measured = latency(client, args.latency_jobs)
    noop = throughput(client, Spec.for_call("tasks:noop"), args.noop_jobs, "no-op call")
    measured["noop_rate"], measured["noop_submit_rate"] = noop
    true = throughput(client, Spec.for_command("true"), args.command_jobs, "`true` command")
    measured["true_rate"], measured["true_submit_rate"] = true
    return measured


def warm_up(client: Client) -> None:
    """Fill every slot twice with each kind, so that child start-up and imports are not timed."""
    slots = sum(w["concurrency"] or 1 for w in client.workers())
    items = [(Spec.for_call("tasks:noop"), Options()), (Spec.for_command("true"), Options())] * (2 * slots)
    jobs = client.submit_many(items)
    drain(client, [job.id for job in jobs], timeout_s=60.0)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(client: Client, args: argparse.Namespace) -> list[str]:
    info = client.redis.info("server")
    fsync = client.redis.config_get("appendfsync").get("appendfsync", "?")
    slots = [str(w["concurrency"]) for w in client.workers()]
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, redis-py {redis.__version__}",
        f"- Redis {info.get('redis_version')} (embedded by `jb up`, appendfsync {fsync})",
        f"- Cluster: `jb up --workers {args.workers}`, worker slots {', '.join(slots)}",
        f"- Jobs: {args.noop_jobs} no-op calls, {args.command_jobs} `true` commands, "
        f"{args.latency_jobs} sequential no-op calls for latency; {args.rounds} rounds",
    ]


def table(rounds: Sequence[Round]) -> list[str]:
    header = "| measure | " + " | ".join(f"round {i + 1}" for i in range(len(rounds))) + " | median |"
    lines = [header, "|---" * (len(rounds) + 2) + "|"]
    for key, label in MEASURES:
        values = [r[key] for r in rounds]
        cells = [f"{v:,.1f}" for v in [*values, statistics.median(values)]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=None, help="slots per worker (jb up's default if unset)")
    parser.add_argument("--noop-jobs", type=int, default=5000)
    parser.add_argument("--command-jobs", type=int, default=1000)
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--log", type=Path, default=None, help="where jb up's output goes (default: a temp file)")
    parser.add_argument("--allow-root", action="store_true", help="let the workers run as root (or JB_ALLOW_ROOT=1)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.workers, args.noop_jobs, args.command_jobs) < 1 or args.latency_jobs < 2:
        parser.error("counts must be >= 1 (and --latency-jobs >= 2)")
    args.allow_root = args.allow_root or os.environ.get("JB_ALLOW_ROOT") == "1"
    if os.geteuid() == 0 and not args.allow_root:
        parser.error("running as root: workers refuse to; pass --allow-root or set JB_ALLOW_ROOT=1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log_path = args.log or Path(tempfile.gettempdir()) / f"jb-bench-{os.getpid()}.log"
    print(f"starting jb up --workers {args.workers} (log: {log_path})", file=sys.stderr)
    try:
        with cluster(args, log_path) as url:
            client = Client(url, PREFIX)
            warm_up(client)
            about = machine(client, args)
            rounds: list[Round] = []
            for number in range(1, args.rounds + 1):
                print(f"round {number}/{args.rounds} ...", file=sys.stderr)
                rounds.append(run_round(client, args))
            client.close()
    except (RuntimeError, TimeoutError, JobBalancerError) as exc:
        print(f"benchmark failed: {exc}\nlast lines of {log_path}:", file=sys.stderr)
        print(log_path.read_text(errors="replace")[-3000:] if log_path.exists() else "", file=sys.stderr)
        return 1
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = ["# Core benchmark results", "", f"`make bench` ({Path(__file__).name}), {stamp}.", "", *about, ""]
    report += [*table(rounds), ""]
    print("\n".join(table(rounds)))
    args.output.write_text("\n".join(report) + "\n")
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
