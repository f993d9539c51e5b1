"""Follow many submitted jobs to their end cheaply: poll only their status, oldest first, in batches.

Jobs finish roughly in the order they were submitted, so checking the oldest unfinished ones
first means each job's status is read about once; full records are read once, at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from jobbalancer.client import Client
from jobbalancer.errors import NoSuchJob, WaitTimeout
from jobbalancer.job import TERMINAL, Record

STATUS_BATCH = 1000
RECORD_BATCH = 1000
POLL_S = 0.02
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

    def add(self, ids: Iterable[str]) -> None:
        new = list(ids)
        self.ids += new
        self.pending += new

    def poll(self) -> bool:
        """Check the oldest pending jobs' status; returns whether all of those checked had finished."""
        batch = self.pending[:STATUS_BATCH]
        if not batch:
            return True
        pipe = self.client.redis.pipeline(transaction=False)
        for job_id in batch:
            pipe.hget(self.client.keys.job(job_id), "status")
        statuses: list[Any] = pipe.execute()
        unfinished = [job_id for job_id, status in zip(batch, statuses, strict=True) if status not in FINISHED]
        self.finished += len(batch) - len(unfinished)
        self.pending = unfinished + self.pending[STATUS_BATCH:]
        return not unfinished

    def wait(self, timeout_s: float | None, on_change: Callable[[], object] | None = None) -> None:
        """Poll until every job has finished.

        Raises:
            WaitTimeout: some were still unfinished after ``timeout_s`` seconds.
        """
        deadline = None if timeout_s is None else self.clock() + timeout_s
        while self.pending:
            before = self.finished
            all_done = self.poll()
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
