"""Replay a trace against a running cluster: submit each job at its arrival time, wait for them all.

Sleep jobs run ``tasks:sleep(service_s)`` and CPU jobs ``tasks:burn(service_s)`` from the example
tasks in ``workers/tasks.py``, so the workers must be able to import ``tasks`` (``jb worker --path
workers``, as ``jb up --path workers`` starts them).

Submission keeps to the trace's clock: every job whose arrival time has come goes out in one
pipelined batch, and how late each one went out (its lag) is kept, so a report can say whether
the replay kept up. The gaps between arrivals are used to count finished jobs.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from jobbalancer.bench.follow import Tracker
from jobbalancer.bench.trace import JobKind, TraceJob
from jobbalancer.client import Client
from jobbalancer.errors import JobBalancerError
from jobbalancer.job import Options, Record, Spec

SLEEP_TASK = "tasks:sleep"
CPU_TASK = "tasks:burn"
POLL_S = 0.05
# The balancer re-reads <p>:config at least once a second; give a policy change that long to apply.
POLICY_SETTLE_S = 1.5
WARM_UP_TIMEOUT_S = 60.0


class ReplayError(JobBalancerError):
    """The cluster cannot run the trace (e.g. a queue no live worker serves)."""


def job_spec(job: TraceJob) -> Spec:
    """The call a trace job becomes."""
    return Spec.for_call(SLEEP_TASK if job.kind is JobKind.SLEEP else CPU_TASK, (job.service_s,))


@dataclass(frozen=True)
class Progress:
    """How far a replay is: jobs submitted and finished, out of the trace's total."""

    submitted: int
    finished: int
    total: int


@dataclass(frozen=True)
class Outcome:
    """A finished replay: every job's final record, in trace order, and how late submissions went out."""

    records: list[Record]
    lags_s: list[float] = field(default_factory=list)

    @property
    def lag_max_s(self) -> float:
        return max(self.lags_s, default=0.0)


class Replayer:
    """Submits one trace and follows it to the end.

    Args:
        client: the cluster's client.
        trace: the jobs, sorted by arrival (``read_csv`` and ``generate`` give them so).
        on_progress: called after every submitted batch and every status poll that saw jobs finish.
        clock, sleep: injectable for tests; monotonic seconds and a sleep.
    """

    def __init__(
        self,
        client: Client,
        trace: Sequence[TraceJob],
        on_progress: Callable[[Progress], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.client = client
        self.trace = list(trace)
        self.on_progress = on_progress
        self.clock = clock
        self.sleep = sleep
        self.tracker = Tracker(client, clock, sleep)
        self.lags_s: list[float] = []

    def run(self, timeout_s: float | None = None) -> Outcome:
        """Submit on schedule, then wait until every job has finished.

        Raises:
            WaitTimeout: jobs were still unfinished ``timeout_s`` seconds after the last submit.
        """
        self._submit_all()
        self.tracker.wait(timeout_s, self._report)
        return Outcome(self.tracker.records(), self.lags_s)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(len(self.tracker.ids), self.tracker.finished, len(self.trace)))

    def _submit_all(self) -> None:
        arrivals = [job.arrival_s for job in self.trace]
        start, index = self.clock(), 0
        while index < len(self.trace):
            now = self.clock() - start
            due = bisect.bisect_right(arrivals, now, lo=index)
            if due > index:
                batch = self.trace[index:due]
                jobs = self.client.submit_many((job_spec(job), Options(queue=job.queue)) for job in batch)
                self.tracker.add(job.id for job in jobs)
                self.lags_s += [max(0.0, now - job.arrival_s) for job in batch]
                index = due
                self._report()
                continue
            if arrivals[index] - now > POLL_S and self.tracker.pending:
                before = self.tracker.finished
                self.tracker.poll()
                if self.tracker.finished != before:
                    self._report()
            remaining = arrivals[index] - (self.clock() - start)
            if remaining > 0:
                self.sleep(min(remaining, POLL_S))


def warm_up(client: Client, trace: Sequence[TraceJob], timeout_s: float = WARM_UP_TIMEOUT_S) -> int:
    """Run ``tasks:sleep(0)`` twice per live slot on every queue of the trace, and wait for them.

    The first call a worker runs starts its call children and imports ``tasks``; without this,
    that start-up would show in the first jobs' service times. Returns the jobs run.

    Raises:
        ReplayError: a queue of the trace has no live worker serving it.
        WaitTimeout: the warm-up did not finish within ``timeout_s``.
    """
    live = [info for info in client.workers() if info["state"] != "dead"]
    queues = sorted({job.queue for job in trace})
    for queue in queues:
        if not any(queue in info["queues"] for info in live):
            raise ReplayError(f"no live worker serves queue {queue!r}")
    slots = sum(info["concurrency"] or 1 for info in live)
    items = [(Spec.for_call(SLEEP_TASK, (0,)), Options(queue=queue)) for queue in queues for _ in range(2 * slots)]
    tracker = Tracker(client)
    tracker.add(job.id for job in client.submit_many(items))
    tracker.wait(timeout_s)
    return len(items)


def worker_slots(client: Client, records: Sequence[Record]) -> dict[str, int | None]:
    """Slots of the live workers and of every worker the records name (None if it is gone)."""
    named = {record.worker for record in records if record.worker}
    slots: dict[str, int | None] = {}
    for info in client.workers():
        if info["state"] != "dead" or info["name"] in named:
            slots[info["name"]] = info["concurrency"]
    for name in named - slots.keys():
        slots[name] = None
    return slots


@contextlib.contextmanager
def policy_for_run(
    client: Client,
    policy: str | None,
    check: Callable[[str], object] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[str]:
    """Set the cluster's policy for the duration of a replay, then put the previous one back.

    Yields the policy in force. Without a ``policy`` nothing changes.
    """
    previous = client.settings().policy
    if policy is None or policy == previous:
        yield previous
        return
    client.set_setting("policy", policy, policy_check=check)
    sleep(POLICY_SETTLE_S)
    try:
        yield policy
    finally:
        client.set_setting("policy", previous)
