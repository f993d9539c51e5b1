"""make bench's harness without the peers: the machine's limits and a tiny jobbalancer round.

The peers are never installed here: they are measured by ``make bench`` only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from jobbalancer.bench.limits import spawn_rate, xadd_rate
from tests.helpers import REPO


def test_xadd_rate_is_measured_and_leaves_no_stream(redis_url: str, r: redis.Redis) -> None:
    rate = xadd_rate(redis_url, entries=20_000, batch=1000)
    assert rate > 10_000  # Redis takes hundreds of thousands a second; anything less is a broken harness
    assert list(r.scan_iter("jb-bench-limit:*")) == []


def test_spawn_rate_runs_true_processes() -> None:
    assert spawn_rate(processes=40, concurrency=2) > 10


def run_script(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.mark.slow
def test_quick_side_by_side_without_peers_prints_and_writes_the_tables(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    done = run_script(
        "benchmarks/side_by_side.py", "--quick", "--systems", "jobbalancer,limits", "--output", str(output), timeout=110
    )
    assert done.returncode == 0, done.stderr
    assert "| no-op call jobs/s | " in done.stdout and "(pipelined XADDs/s)" in done.stdout
    assert "| submit→start p50, ms | " in done.stdout
    assert "MISSED" in done.stdout or "met:" in done.stdout
    text = output.read_text()
    assert text.startswith("# Benchmark results")
    assert "- CPU: " in text and "Redis " in text
    assert re.search(r"^- jobbalancer \S+: `jb up --workers 2` \(\d+ slots in all\), default settings$", text, re.M)
    assert re.search(r"^\| jobbalancer \S+ \| noop_rate \| 1,000 \| [\d,]+ \| [\d,]+ \|$", text, re.M)
    assert "| machine limits | xadd_rate | 20,000 |" in text


def test_side_by_side_refuses_unknown_systems() -> None:
    done = run_script("benchmarks/side_by_side.py", "--systems", "jobbalancer,sidekiq", timeout=30)
    assert done.returncode == 2
    assert "unknown systems ['sidekiq']" in done.stderr


@pytest.mark.slow
def test_core_benchmark_still_runs(tmp_path: Path) -> None:
    output = tmp_path / "core.md"
    done = run_script(
        "benchmarks/core.py", "--rounds", "1", "--noop-jobs", "200", "--command-jobs", "40", "--latency-jobs", "5",
        "--output", str(output), timeout=110,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| no-op call jobs/s |" in done.stdout
    assert output.read_text().startswith("# Core benchmark results")
