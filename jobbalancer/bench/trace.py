"""Synthetic workload traces: when each job arrives, how long it runs, what kind it is, which queue.

Pure and seeded: the same arguments and seed give the same trace. Arrivals, service times and
queues each draw from a random stream of their own (seeded ``<seed>:arrival``, ``<seed>:service``,
``<seed>:queue``), so two traces that differ only in their service distribution share their
arrival times: a fair way to compare workloads.

A trace is a CSV file with a header row::

    arrival_s,service_s,kind,queue
    0.000000,0.052113,sleep,default
    0.013402,0.048870,sleep,default

``arrival_s`` is seconds since the start of the replay, ``service_s`` the seconds the job runs,
``kind`` is ``sleep`` (``tasks:sleep``, no CPU) or ``cpu`` (``tasks:burn``, one core busy).
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from jobbalancer.job import QUEUE_PATTERN

COLUMNS = ("arrival_s", "service_s", "kind", "queue")
MAX_JOBS = 10_000_000
# A normal draw below zero is redrawn; give up on a distribution that keeps producing them.
MAX_REDRAWS = 1000


class TraceError(ValueError):
    """Bad trace parameters or a malformed trace file; the message says what to fix."""


class Shape(StrEnum):
    EXPONENTIAL = "exponential"
    CONSTANT = "constant"
    UNIFORM = "uniform"
    NORMAL = "normal"


class JobKind(StrEnum):
    SLEEP = "sleep"
    CPU = "cpu"


@dataclass(frozen=True)
class Distribution:
    """A distribution of non-negative durations, in seconds.

    Attributes:
        shape: exponential (its stdev is its mean), constant (no stdev), uniform (stdev optional:
            without it the range is 0 to twice the mean) or normal (stdev required; draws below
            zero are redrawn, which raises the mean noticeably only when stdev > mean / 3).
        mean_s: the mean.
        stdev_s: the standard deviation, where the shape takes one.
    """

    shape: Shape
    mean_s: float
    stdev_s: float | None = None

    def validated(self, what: str) -> Distribution:
        """Check the parameters; raises TraceError naming ``what`` (e.g. "arrival") and the problem."""
        if not (math.isfinite(self.mean_s) and self.mean_s >= 0):
            raise TraceError(f"{what} mean must be a number of seconds >= 0, got {self.mean_s!r}")
        if self.stdev_s is not None and not (math.isfinite(self.stdev_s) and self.stdev_s >= 0):
            raise TraceError(f"{what} stdev must be a number of seconds >= 0, got {self.stdev_s!r}")
        if self.shape in (Shape.EXPONENTIAL, Shape.CONSTANT) and self.stdev_s:
            raise TraceError(f"{what} stdev does not apply to the {self.shape.value} distribution")
        if self.shape is Shape.EXPONENTIAL and self.mean_s == 0:
            raise TraceError(f"{what} mean must be > 0 for an exponential distribution")
        if self.shape is Shape.NORMAL and self.stdev_s is None:
            raise TraceError(f"{what} stdev is required for a normal distribution")
        if self.shape is Shape.UNIFORM and self.stdev_s is not None and self.half_width > self.mean_s + 1e-12:
            limit = self.mean_s / math.sqrt(3)
            raise TraceError(
                f"{what} stdev {self.stdev_s} is too large for a uniform mean of {self.mean_s}: "
                f"the range would go below 0 (at most {limit:.6g})"
            )
        return self

    @property
    def half_width(self) -> float:
        """Half the range of a uniform distribution (stdev * sqrt(3); the mean if no stdev)."""
        return self.mean_s if self.stdev_s is None else self.stdev_s * math.sqrt(3)

    def draw(self, rng: random.Random) -> float:
        if self.shape is Shape.CONSTANT:
            return self.mean_s
        if self.shape is Shape.EXPONENTIAL:
            return rng.expovariate(1.0 / self.mean_s)
        if self.shape is Shape.UNIFORM:
            return max(0.0, rng.uniform(self.mean_s - self.half_width, self.mean_s + self.half_width))
        for _ in range(MAX_REDRAWS):
            value = rng.gauss(self.mean_s, self.stdev_s or 0.0)
            if value >= 0:
                return value
        return 0.0


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace."""

    arrival_s: float
    service_s: float
    kind: JobKind
    queue: str = "default"


def parse_queues(text: str | None) -> list[tuple[str, float]]:
    """``"a:0.7,b:0.3"`` -> ``[("a", 0.7), ("b", 0.3)]``; weights are relative (they need not add up to 1).

    Raises:
        TraceError: for a malformed entry, a bad queue name, a repeated queue or a weight that is not > 0.
    """
    if text is None or not text.strip():
        return [("default", 1.0)]
    weights: dict[str, float] = {}
    for entry in text.split(","):
        name, sep, weight_text = entry.strip().partition(":")
        if not sep:
            raise TraceError(f"queue entry {entry.strip()!r} must be NAME:WEIGHT, e.g. a:0.7")
        if not QUEUE_PATTERN.match(name):
            raise TraceError(f"queue {name!r} is not a valid name (letters, digits, '.', '_', '-'; at most 64)")
        if name in weights:
            raise TraceError(f"queue {name!r} is listed twice")
        try:
            weight = float(weight_text)
        except ValueError:
            raise TraceError(f"queue {name!r} has weight {weight_text!r}, not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise TraceError(f"queue {name!r} must have a weight > 0, got {weight_text!r}")
        weights[name] = weight
    return list(weights.items())


def generate(
    jobs: int,
    arrival: Distribution,
    service: Distribution,
    kind: JobKind,
    queues: Sequence[tuple[str, float]] = (("default", 1.0),),
    seed: int | None = None,
) -> list[TraceJob]:
    """A trace of ``jobs`` jobs: the first arrives at 0, each next one an ``arrival`` gap later.

    Raises:
        TraceError: for a job count outside 1..10,000,000 or invalid distributions.
    """
    if not 1 <= jobs <= MAX_JOBS:
        raise TraceError(f"jobs must be from 1 to {MAX_JOBS:,}, got {jobs}")
    arrival, service = arrival.validated("arrival"), service.validated("service")
    if not queues:
        raise TraceError("at least one queue is needed")
    base = random.randrange(2**63) if seed is None else seed
    gaps, runs, picks = (random.Random(f"{base}:{stream}") for stream in ("arrival", "service", "queue"))
    names, weights = [name for name, _w in queues], [weight for _n, weight in queues]
    trace, clock = [], 0.0
    for index in range(jobs):
        if index:
            clock += arrival.draw(gaps)
        queue = names[0] if len(names) == 1 else picks.choices(names, weights)[0]
        trace.append(TraceJob(clock, service.draw(runs), kind, queue))
    return trace


def write_csv(trace: Iterable[TraceJob], out: TextIO) -> int:
    """Write the trace with a header row; returns the number of jobs written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for job in trace:
        writer.writerow([f"{job.arrival_s:.6f}", f"{job.service_s:.6f}", job.kind.value, job.queue])
        count += 1
    return count


def read_csv(source: Path | TextIO) -> list[TraceJob]:
    """Read a trace file, sorted by arrival; raises TraceError naming the line that is wrong."""
    if isinstance(source, Path):
        try:
            text = source.read_text()
        except OSError as exc:
            raise TraceError(f"cannot read {source}: {exc.strerror or exc}") from None
        return read_csv(io.StringIO(text))
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None or tuple(cell.strip() for cell in header) != COLUMNS:
        raise TraceError(f"a trace starts with the header {','.join(COLUMNS)}; got {header!r}")
    trace = list(_rows(reader))
    if not trace:
        raise TraceError("the trace has no jobs")
    return sorted(trace, key=lambda job: job.arrival_s)


def _rows(reader: Iterator[list[str]]) -> Iterator[TraceJob]:
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(COLUMNS):
            raise TraceError(f"line {line}: expected {len(COLUMNS)} fields ({','.join(COLUMNS)}), got {len(row)}")
        arrival_text, service_text, kind_text, queue = (cell.strip() for cell in row)
        arrival_s, service_s = _seconds(line, "arrival_s", arrival_text), _seconds(line, "service_s", service_text)
        if kind_text not in {k.value for k in JobKind}:
            raise TraceError(f"line {line}: kind must be sleep or cpu, got {kind_text!r}")
        if not QUEUE_PATTERN.match(queue):
            raise TraceError(f"line {line}: queue {queue!r} is not a valid name")
        yield TraceJob(arrival_s, service_s, JobKind(kind_text), queue)


def _seconds(line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"line {line}: {column} {text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise TraceError(f"line {line}: {column} must be >= 0, got {text!r}")
    return value


@dataclass(frozen=True)
class Summary:
    """What a trace asks of a cluster, for sizing it."""

    jobs: int
    span_s: float
    service_total_s: float

    @property
    def arrival_rate(self) -> float:
        """Jobs per second over the trace's span (0 for a single job)."""
        return (self.jobs - 1) / self.span_s if self.span_s > 0 else 0.0

    @property
    def offered_load(self) -> float:
        """Busy slots needed on average: total service time over the span (inf for an instant burst)."""
        return self.service_total_s / self.span_s if self.span_s > 0 else math.inf


def summarise(trace: Sequence[TraceJob]) -> Summary:
    span = trace[-1].arrival_s - trace[0].arrival_s if trace else 0.0
    return Summary(len(trace), span, sum(job.service_s for job in trace))
