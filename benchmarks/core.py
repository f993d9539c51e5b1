"""Core benchmark: throughput and latency of a local ``jb up`` cluster, measured with the Python API.

Starts its own ``jb up --workers 2`` (an embedded Redis on a free port, its data in a temp dir),
waits until the workers have registered, then for each round measures:

- no-op calls: 5,000 ``tasks:noop`` call jobs submitted in bulk, then drained;
- ``true`` commands: 1,000 ``true`` command jobs submitted in bulk, then drained;
- latency: 200 no-op calls one after the other on the idle cluster: submit->start from the
  records (started_at - created_at, both written by Redis's clock) and submit->result as the
  client sees it (wall time around ``enqueue`` and ``result()``).

Throughput is jobs / (last finished_at - Redis's TIME just before the submit), both Redis's clock.
Start-up is not timed. Prints a markdown table of every round and the medians, writes it with a
description of the machine to ``benchmarks/core-results.md``, and stops the cluster on exit.
``make bench`` (``side_by_side.py``) takes the same measurements, beside the peers'; the
measuring code is shared, in ``jobbalancer.bench.measure``.

    python benchmarks/core.py [--rounds 3] [--workers 2] [--concurrency C]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis

from jobbalancer import Client
from jobbalancer.bench.measure import PREFIX, UpOptions, free_port, jb_up, latency, throughput, warm_up
from jobbalancer.errors import JobBalancerError
from jobbalancer.job import Spec

HERE = Path(__file__).resolve().parent
WORKERS_DIR = HERE.parent / "workers"


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


def run_round(client: Client, args: argparse.Namespace) -> Round:
    """Latency first, while the cluster is idle; then the two bulk runs."""
    measured = latency(client, args.latency_jobs)
    noop = throughput(client, Spec.for_call("tasks:noop"), args.noop_jobs, "no-op call")
    measured["noop_rate"], measured["noop_submit_rate"] = noop.rate, noop.submit_rate
    true = throughput(client, Spec.for_command("true"), args.command_jobs, "`true` command")
    measured["true_rate"], measured["true_submit_rate"] = true.rate, true.submit_rate
    return measured


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
    parser.add_argument("--output", type=Path, default=HERE / "core-results.md")
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
        url = f"redis://127.0.0.1:{free_port()}/0"
        options = UpOptions(args.workers, args.concurrency, [str(WORKERS_DIR)], args.allow_root, own_redis=True)
        with jb_up(url, log_path, options):
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
