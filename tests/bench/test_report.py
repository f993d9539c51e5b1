"""The per-worker report of a replay, from records (pure)."""

from __future__ import annotations

import pytest

from jobbalancer.bench.report import ALL, UNPLACED, build, percentile, running_series, to_markdown
from jobbalancer.job import Record, Status


def record(job_id: str, worker: str | None, created: float, started: float | None, finished: float | None,
           status: Status = Status.SUCCEEDED) -> Record:  # fmt: skip
    return Record.from_hash(
        job_id,
        {
            "kind": "call",
            "status": status.value,
            "worker": worker or "",
            "created_at": str(created),
            "started_at": "" if started is None else str(started),
            "finished_at": "" if finished is None else str(finished),
        },
    )


RECORDS = [
    # w1 runs two jobs of 1 s back to back; w2 one job of 2 s that waited 1 s; one rejected.
    record("a", "w1", 100.0, 100.0, 101.0),
    record("b", "w1", 100.0, 101.0, 102.0),
    record("c", "w2", 101.0, 102.0, 104.0),
    record("d", None, 100.5, None, 100.5, Status.REJECTED),
]


def test_percentile_interpolates() -> None:
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)


def test_per_worker_rows_add_up_to_the_run() -> None:
    report = build(RECORDS, {"w1": 2, "w2": 1, "idle": 4})
    rows = {row.name: row for row in report.workers}
    assert [row.name for row in report.workers] == ["idle", "w1", "w2", UNPLACED]
    assert sum(row.jobs for row in report.workers) == report.total.jobs == 4
    assert report.span_s == pytest.approx(4.0)
    assert report.statuses == {"succeeded": 3, "rejected": 1}
    w1, w2, idle = rows["w1"], rows["w2"], rows["idle"]
    assert (w1.jobs, w1.busy_s, w1.service_mean_s) == (2, pytest.approx(2.0), pytest.approx(1.0))
    assert w1.utilisation == pytest.approx(2.0 / (2 * 4.0))
    assert (w1.wait_p50_s, w1.wait_p95_s) == (pytest.approx(0.5), pytest.approx(0.95))
    assert (w2.busy_s, w2.utilisation, w2.wait_p50_s) == (pytest.approx(2.0), pytest.approx(0.5), pytest.approx(1.0))
    assert (idle.jobs, idle.busy_s, idle.utilisation, idle.wait_p50_s) == (0, 0.0, 0.0, None)
    assert rows[UNPLACED].slots is None and rows[UNPLACED].busy_s == 0
    total = report.total
    assert total.name == ALL and total.slots == 7
    assert total.utilisation == pytest.approx(4.0 / (7 * 4.0))
    assert report.throughput == pytest.approx(1.0)


def test_a_worker_gone_since_has_unknown_slots_and_no_utilisation() -> None:
    report = build(RECORDS[:2], {})
    (w1,) = report.workers
    assert (w1.name, w1.slots, w1.utilisation) == ("w1", None, None)
    assert report.total.utilisation is None


def test_running_series_steps_up_and_down_per_worker() -> None:
    series = running_series(RECORDS, 100.0)
    assert series["w1"] == [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1), (2.0, 0)]
    assert series["w2"] == [(0.0, 0), (2.0, 1), (4.0, 0)]
    assert UNPLACED not in series and None not in series


def test_markdown_has_one_row_per_worker_and_a_total() -> None:
    text = to_markdown(build(RECORDS, {"w1": 2, "w2": 1}), "Replay of t.csv", ["policy `least-loaded`"])
    lines = text.splitlines()
    assert lines[0] == "# Replay of t.csv"
    assert "- policy `least-loaded`" in lines
    assert "4 jobs in 4.00 s (1.0 jobs/s), first submit to last finish; 3 succeeded, 1 rejected" in lines
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| worker | slots | jobs | busy s | utilisation | wait p50 ms |")
    assert table[1].startswith("| w1 | 2 | 2 | 2.00 | 25% | 500.0 | 950.0 | 1.000 |")
    assert table[-1].startswith("| **all** | **3** | **4** |")
