"""``jb bench replay`` on a real cluster: every job of the trace is run, reported per worker, drawn."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobbalancer.cli import main
from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.slow


def make_trace(cluster: Cluster, path: Path, *args: str) -> None:
    made = cluster.jb("bench", "trace", "--seed", "11", "--out", str(path), *args)
    assert made.returncode == 0, made.stderr


def report_rows(text: str) -> dict[str, list[str]]:
    """The report's table: first cell (stars stripped) -> the row's cells."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| worker "):
            cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def test_a_replayed_trace_is_reported_per_worker_and_drawn(running: Cluster, tmp_path: Path) -> None:
    trace, report, plot = tmp_path / "trace.csv", tmp_path / "report.md", tmp_path / "report.png"
    make_trace(running, trace, "--jobs", "30", "--arrival", "constant", "--mean", "0.02",
               "--service", "uniform", "--service-mean", "0.05", "--kind", "sleep")  # fmt: skip
    replayed = running.jb("bench", "replay", str(trace), "--report", str(report), "--plot", str(plot), timeout=90)
    assert replayed.returncode == 0, replayed.stderr
    rows = report_rows(report.read_text())
    assert set(rows) == {"w1", "w2", "all"}
    assert int(rows["w1"][2]) + int(rows["w2"][2]) == int(rows["all"][2]) == 30
    assert rows["all"][1] == "4"  # two workers with 2 slots each
    assert "30 jobs in" in report.read_text() and "30 succeeded" in report.read_text()
    assert "policy `least-loaded`" in report.read_text()
    # The printed table has the same rows; the submissions kept to the trace's 0.58 s.
    assert re.search(r"w1 .* w2 .* all", replayed.stdout, re.S)
    records = running.client.jobs(limit=30)
    created = sorted(rec.created_at or 0 for rec in records)
    assert len(records) == 30 and created[-1] - created[0] >= 0.5
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and plot.stat().st_size > 10_000


def test_a_policy_applies_for_the_run_only_and_cpu_jobs_burn(running: Cluster, tmp_path: Path) -> None:
    trace, report = tmp_path / "trace.csv", tmp_path / "report.md"
    make_trace(running, trace, "--jobs", "8", "--arrival", "exponential", "--mean", "0.01",
               "--service", "constant", "--service-mean", "0.02", "--kind", "cpu")  # fmt: skip
    replayed = running.jb("bench", "replay", str(trace), "--policy", "round-robin", "--report", str(report))
    assert replayed.returncode == 0, replayed.stderr
    text = report.read_text()
    assert "policy `round-robin`" in text and "8 succeeded" in text
    assert int(report_rows(text)["all"][2]) == 8
    burns = [rec for rec in running.client.jobs(limit=8) if rec.spec.get("func") == "tasks:burn"]
    assert len(burns) == 8 and all(isinstance(rec.result, int) and rec.result > 0 for rec in burns)
    assert running.jb("config", "get", "policy").stdout == "least-loaded\n"
    trace.write_text("arrival_s,service_s,kind,queue\n0,0.1,sleep,nobody\n")
    refused = running.jb("bench", "replay", str(trace))
    assert (refused.returncode, refused.stderr) == (1, "jb: error: no live worker serves queue 'nobody'\n")


def test_replay_without_live_workers_or_with_bad_input_says_so(redis_url: str, prefix: str, tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,service_s,kind,queue\n0,0.1,sleep,default\n")

    def replay(*args: str) -> Result:
        return CliRunner().invoke(
            main, ["--redis", redis_url, "--prefix", prefix, "bench", "replay", str(trace), *args]
        )

    outcome = replay()
    assert outcome.exit_code == 1
    assert outcome.stderr == "jb: error: no live workers: start a cluster first, e.g. `jb up --path workers`\n"
    outcome = replay("--policy", "nonesuch")
    assert (outcome.exit_code, outcome.stderr.count("\n")) == (2, 1)
    assert "policy 'nonesuch' is unknown" in outcome.stderr
    trace.write_text("arrival,service\n")
    outcome = replay()
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith(f"jb: error: {trace}: a trace starts with the header arrival_s,service_s")
