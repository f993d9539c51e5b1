"""The per-worker report of a replayed trace, from the finished job records (pure).

Every time comes from the records, so from Redis's clock: a job's wait is ``started_at −
created_at`` (submit to start, through the balancer), its service ``finished_at − started_at``.
The run's span is from the first job's ``created_at`` to the last ``finished_at``; a worker's
utilisation is its busy time over ``slots × span``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobbalancer.job import Record

UNPLACED = "(unplaced)"
ALL = "all"


@dataclass(frozen=True)
class Stats:
    """One row of the report: a worker, the jobs no worker took, or the whole run.

    Attributes:
        name: the worker's name, ``(unplaced)`` or ``all``.
        jobs: jobs whose record names this worker (a retried job counts for its last worker).
        slots: the worker's slots (concurrency), if known.
        busy_s: the sum of the service times of its jobs.
        utilisation: ``busy_s / (slots × span)``, if the slots are known.
        wait_p50_s: median submit→start wait of its jobs that started.
        wait_p95_s: 95th percentile of those waits.
        service_mean_s: mean service time of its jobs that ran.
    """

    name: str
    jobs: int
    slots: int | None
    busy_s: float
    utilisation: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None
    service_mean_s: float | None


@dataclass(frozen=True)
class Report:
    """Every worker's row (registered workers that took no job included), and the whole run."""

    workers: list[Stats]
    total: Stats
    span_s: float
    start_at: float
    statuses: dict[str, int]

    @property
    def throughput(self) -> float:
        """Finished jobs per second over the span."""
        return self.total.jobs / self.span_s if self.span_s > 0 else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (``pct`` from 0 to 100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_s(record: Record) -> float | None:
    if record.started_at is None or record.created_at is None:
        return None
    return max(0.0, record.started_at - record.created_at)


def service_s(record: Record) -> float | None:
    if record.started_at is None or record.finished_at is None:
        return None
    return max(0.0, record.finished_at - record.started_at)


def run_window(records: Sequence[Record]) -> tuple[float, float]:
    """(start, span): first ``created_at`` and the seconds from it to the last ``finished_at``."""
    created = [r.created_at for r in records if r.created_at is not None]
    ends = [t for r in records for t in (r.finished_at, r.started_at, r.created_at) if t is not None]
    if not created:
        return 0.0, 0.0
    start = min(created)
    return start, max(0.0, max(ends) - start)


def stats(name: str, records: Sequence[Record], slots: int | None, span_s: float) -> Stats:
    waits = [w for w in map(wait_s, records) if w is not None]
    services = [s for s in map(service_s, records) if s is not None]
    busy = sum(services)
    capacity = (slots or 0) * span_s
    return Stats(
        name=name,
        jobs=len(records),
        slots=slots,
        busy_s=busy,
        utilisation=busy / capacity if slots and capacity > 0 else None,
        wait_p50_s=percentile(waits, 50) if waits else None,
        wait_p95_s=percentile(waits, 95) if waits else None,
        service_mean_s=statistics.fmean(services) if services else None,
    )


def build(records: Sequence[Record], slots: Mapping[str, int | None]) -> Report:
    """The report of a run.

    Args:
        records: the final records of every job of the run.
        slots: registered workers and their slots; workers in ``slots`` that took no job get a row
            of zeros, workers named by records but missing here (gone since) get unknown slots.
    """
    start, span = run_window(records)
    by_worker: dict[str, list[Record]] = {name: [] for name in slots}
    for record in records:
        by_worker.setdefault(record.worker or UNPLACED, []).append(record)
    names = sorted(by_worker, key=lambda name: (name == UNPLACED, name))
    rows = [stats(name, by_worker[name], slots.get(name), span) for name in names]
    worker_slots = [row.slots for row in rows if row.name != UNPLACED]
    known = all(s is not None for s in worker_slots) and worker_slots
    total_slots = sum(s or 0 for s in worker_slots) if known else None
    total = stats(ALL, records, total_slots, span)
    statuses = dict(Counter(record.status.value for record in records).most_common())
    return Report(rows, total, span, start, statuses)


def running_series(records: Sequence[Record], start_at: float) -> dict[str, list[tuple[float, int]]]:
    """Per worker, the steps of its running-job count: (seconds since ``start_at``, count from then on)."""
    events: dict[str, list[tuple[float, int]]] = {}
    for record in records:
        if record.worker and record.started_at is not None and record.finished_at is not None:
            steps = events.setdefault(record.worker, [])
            steps.append((record.started_at - start_at, 1))
            steps.append((record.finished_at - start_at, -1))
    series: dict[str, list[tuple[float, int]]] = {}
    for worker, steps in sorted(events.items()):
        running, points = 0, [(0.0, 0)]
        for at, change in sorted(steps):  # at equal times -1 sorts first: a freed slot before a new start
            running += change
            points.append((at, running))
        series[worker] = points
    return series


def waits(records: Sequence[Record]) -> list[float]:
    """Every started job's submit→start wait, in seconds."""
    return [w for w in map(wait_s, records) if w is not None]


HEADERS = ("worker", "slots", "jobs", "busy s", "utilisation", "wait p50 ms", "wait p95 ms", "service mean s")


def cells(row: Stats) -> list[str]:
    """One report row as text, in the order of ``HEADERS``."""
    return [
        row.name,
        "?" if row.slots is None else str(row.slots),
        str(row.jobs),
        f"{row.busy_s:.2f}",
        "–" if row.utilisation is None else f"{row.utilisation:.0%}",
        "–" if row.wait_p50_s is None else f"{row.wait_p50_s * 1000:.1f}",
        "–" if row.wait_p95_s is None else f"{row.wait_p95_s * 1000:.1f}",
        "–" if row.service_mean_s is None else f"{row.service_mean_s:.3f}",
    ]


def describe(report: Report) -> str:
    """One line: jobs, span, throughput and the final statuses."""
    statuses = ", ".join(f"{count} {status}" for status, count in report.statuses.items())
    return (
        f"{report.total.jobs} jobs in {report.span_s:.2f} s ({report.throughput:.1f} jobs/s), "
        f"first submit to last finish; {statuses}"
    )


def to_markdown(report: Report, title: str, details: Sequence[str] = ()) -> str:
    """The report as a markdown document: a title, detail bullets, a summary line and the table."""
    lines = [f"# {title}", ""]
    if details:
        lines += [*(f"- {detail}" for detail in details), ""]
    lines += [describe(report), ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * (len(HEADERS) - 1)]
    for row in [*report.workers, report.total]:
        text = cells(row)
        if row is report.total:
            text = [f"**{cell}**" for cell in text]
        lines.append("| " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"
