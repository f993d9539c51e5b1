"""Follow many submitted jobs to their end cheaply: poll only their status, oldest first, in batches.

Jobs finish roughly in the order they were submitted, so checking the oldest unfinished ones
first means each job's status is read about once, with the two times a throughput figure needs
(:meth:`Tracker.ends`); full records are read only when asked for (:meth:`Tracker.records`).
While waiting, the cluster's count of finished jobs (``<p>:stats``, one small hash) says how many
statuses are worth reading: a benchmark's follower must not load Redis more than the peers'
drivers load theirs (one cheap read every few milliseconds). Statuses are read in batches of
:data:`SETTLE_BATCH` at least (or all that are left): every pipelined read costs this side a
fixed ~0.3 ms of Python, which a trickle of small ones would pay per job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from jobbalancer.client import Client
from jobbalancer.errors import NoSuchJob, WaitTimeout
from jobbalancer.job import TERMINAL, Record
from jobbalancer.stats import read_stats

STATUS_BATCH = 1000
SETTLE_BATCH = 250  # read statuses once this many of ours may have finished (or all that are left)
RECORD_BATCH = 1000
POLL_S = 0.05  # how often the count is read: how soon the end is seen, not what a benchmark measures
RECHECK_S = 0.5  # read statuses at least this often, whatever the count says (jobs that finished before we began)
FINISHED = frozenset(status.value for status in TERMINAL)
END_FIELDS = ("status", "created_at", "finished_at")


class End(NamedTuple):
    """How one finished job ended: its status, and when it was created and finished (Redis's clock, epoch s)."""

    id: str
    status: str
    created_at: float
    finished_at: float


class Tracker:
    """The jobs of one run, in submission order, and how many of them have finished.

    Args:
        client: the cluster's client.
        clock, sleep: injectable for tests; monotonic seconds and a sleep.
    """

    def __init__(
        self,
        client: Client,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self.ids: list[str] = []
        self.pending: list[str] = []
        self.finished = 0
        self._ends: dict[str, End] = {}
        self._counted_at_start = self._counted()
        self._checked_at = self.clock()

    def add(self, ids: Iterable[str]) -> None:
        new = list(ids)
        self.ids += new
        self.pending += new

    def _counted(self) -> int:
        return read_stats(self.client.redis, self.client.keys).total_finished

    def poll(self, limit: int = STATUS_BATCH) -> bool:
        """Check the oldest pending jobs' status (at most ``limit``); returns whether all checked had finished."""
        batch = self.pending[: max(1, min(limit, STATUS_BATCH))]
        if not batch:
            return True
        pipe = self.client.redis.pipeline(transaction=False)
        for job_id in batch:
            pipe.hmget(self.client.keys.job(job_id), END_FIELDS)
        unfinished = []
        for job_id, (status, created, finished) in zip(batch, pipe.execute(), strict=True):
            if status in FINISHED:
                self._ends[job_id] = End(job_id, status, float(created or 0), float(finished or 0))
            else:
                unfinished.append(job_id)
        self.finished += len(batch) - len(unfinished)
        self.pending = unfinished + self.pending[len(batch) :]
        return not unfinished

    def wait(self, timeout_s: float | None, on_change: Callable[[], object] | None = None) -> None:
        """Poll until every job has finished.

        Raises:
            WaitTimeout: some were still unfinished after ``timeout_s`` seconds.
        """
        deadline = None if timeout_s is None else self.clock() + timeout_s
        while self.pending:
            before = self.finished
            wanted = self._worth_reading()
            all_done = False
            if wanted > 0:
                self._checked_at = self.clock()
                all_done = self.poll(wanted)
            if self.finished != before and on_change is not None:
                on_change()
            if all_done:
                continue
            if deadline is not None and self.clock() > deadline:
                raise WaitTimeout(f"{len(self.pending)} of {len(self.ids)} jobs still unfinished after {timeout_s}s")
            self.sleep(POLL_S)

    def _worth_reading(self) -> int:
        """How many statuses to read now (0: none yet)."""
        # Jobs finished since we began, by the cluster's count, that we have not seen yet (any
        # other job finishing meanwhile only makes us look sooner): read that many, once they make
        # a batch, or all that are left, or RECHECK_S has passed.
        unseen = self._counted() - self._counted_at_start - self.finished
        stale = self.clock() - self._checked_at >= RECHECK_S
        if unseen >= min(SETTLE_BATCH, len(self.pending)) or (unseen > 0 and stale):
            return unseen
        return STATUS_BATCH if stale else 0  # nothing counted: look anyway (jobs that finished before we began)

    def ends(self) -> list[End]:
        """How every job ended, in submission order, from the status polls; call once :meth:`wait` returned."""
        return [self._ends[job_id] for job_id in self.ids]

    def records(self) -> list[Record]:
        """Every job's record, in submission order."""
        records = []
        for offset in range(0, len(self.ids), RECORD_BATCH):
            chunk = self.ids[offset : offset + RECORD_BATCH]
            pipe = self.client.redis.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hgetall(self.client.keys.job(job_id))
            for job_id, raw in zip(chunk, pipe.execute(), strict=True):
                if not raw:
                    raise NoSuchJob(job_id)
                records.append(Record.from_hash(job_id, raw))
        return records
