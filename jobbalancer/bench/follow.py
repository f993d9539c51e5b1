"""Follow many submitted jobs to their end cheaply: poll only their status, oldest first, in batches.

Jobs finish roughly in the order they were submitted, so checking the oldest unfinished ones
first means each job's status is read about once; full records are read once, at the end.
While waiting, the cluster's count of finished jobs (``<p>:stats``, one small hash) says how many
statuses are worth reading: a benchmark's follower must not load Redis more than the peers'
drivers load theirs (one cheap read every few milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from jobbalancer.client import Client
from jobbalancer.errors import NoSuchJob, WaitTimeout
from jobbalancer.job import TERMINAL, Record
from jobbalancer.stats import read_stats

STATUS_BATCH = 1000
RECORD_BATCH = 1000
POLL_S = 0.02
RECHECK_S = 0.5  # read statuses at least this often, whatever the count says (jobs that finished before we began)
FINISHED = frozenset(status.value for status in TERMINAL)


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
            pipe.hget(self.client.keys.job(job_id), "status")
        statuses: list[Any] = pipe.execute()
        unfinished = [job_id for job_id, status in zip(batch, statuses, strict=True) if status not in FINISHED]
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
            # Jobs finished since we began, by the cluster's count, that we have not seen yet: read
            # that many statuses (any other job finishing meanwhile only makes us look sooner).
            unseen = self._counted() - self._counted_at_start - self.finished
            if unseen <= 0 and self.clock() - self._checked_at >= RECHECK_S:
                unseen = STATUS_BATCH
            all_done = False
            if unseen > 0:
                self._checked_at = self.clock()
                all_done = self.poll(unseen)
            if self.finished != before and on_change is not None:
                on_change()
            if all_done:
                continue
            if deadline is not None and self.clock() > deadline:
                raise WaitTimeout(f"{len(self.pending)} of {len(self.ids)} jobs still unfinished after {timeout_s}s")
            self.sleep(POLL_S)

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
