"""Taking entries from the worker's stream into free slots, and starting them (fenced).

A mixin of :class:`jobbalancer.worker.loop.Worker` (whose main thread calls it): ``take.lua``
reads and starts up to the free slots' worth of entries in one step; when the stream is empty,
a blocking ``XREADGROUP`` and then ``start.lua``. After a lost reply it finds what it read but
does not run. Each job taken goes to a slot thread (:mod:`jobbalancer.worker.slots`).
"""

from __future__ import annotations

import logging

from jobbalancer.keys import WORKER_GROUP, Keys
from jobbalancer.worker.control import Blocking, stream_entries
from jobbalancer.worker.running import Assignment
from jobbalancer.worker.slots import Slots, taken

log = logging.getLogger("jobbalancer.worker")

READ_BLOCK_MS = 1000


class Intake(Slots):
    """Reading and starting entries; the worker provides the state it uses."""

    concurrency: int
    keys: Keys
    _busy: int
    _reader: Blocking | None

    def _take(self, count: int) -> bool:
        """take.lua: read and start up to ``count`` waiting entries in one round trip.

        Returns whether it found any entry to run; when it finds none, the caller blocks on the stream.
        """
        batch = taken(self._scripts.take(self.prefix, self.name, count)[1])
        with self._cond:
            if self._stopping:
                return True  # started but not run: release.lua hands them back
            self._busy += len(batch)
        for job in batch:
            self._launch(job)
        return bool(batch)

    def _read_pending(self) -> list[Assignment]:
        """After a lost reply: the entries this worker read but is not running (they may be started).

        Each takes a slot; ``_start(retry=True)`` then launches or starts them.
        """
        reply = self._client.xreadgroup(
            WORKER_GROUP, self.name, {self.keys.worker_jobs(self.name): "0"}, count=self.concurrency * 4
        )
        with self._cond:
            running = {run.assignment.entry for run in self._running.values()} | self._recorder.unwritten()
            batch = [
                Assignment.from_entry(entry, fields)
                for entry, fields in stream_entries(reply)
                if fields and entry not in running
            ][: max(0, self.concurrency - self._busy)]
            self._busy += len(batch)
        return batch

    def _read(self, count: int) -> list[Assignment]:
        """Read up to ``count`` new entries and take a slot for each."""
        assert self._reader is not None
        reply = self._reader.conn.xreadgroup(
            WORKER_GROUP, self.name, {self.keys.worker_jobs(self.name): ">"}, count=count, block=READ_BLOCK_MS
        )
        batch = [Assignment.from_entry(entry, fields) for entry, fields in stream_entries(reply)]
        with self._cond:
            if self._stopping:
                return []  # not started: the entries stay in the stream and are handed back
            self._busy += len(batch)
        return batch

    def _start(self, batch: list[Assignment], retry: bool) -> None:
        """start.lua for a batch in one round trip; launch those that are still ours.

        On a retry the previous attempt may have run on the server with its answer lost: a job
        already running for this worker at this attempt is launched without starting it again.
        """
        if not batch:
            return
        started: set[str] = set()
        if retry:
            pipe = self._client.pipeline(transaction=False)
            for job in batch:
                pipe.hmget(self.keys.job(job.id), "status", "worker", "attempts")
            states = pipe.execute()
            mine = {job.entry: ["running", self.name, job.attempt] for job in batch}
            started = {job.entry for job, state in zip(batch, states, strict=True) if state == mine[job.entry]}
        pipe = self._client.pipeline(transaction=False)
        todo = [job for job in batch if job.entry not in started]
        for job in todo:
            self._scripts.start(self.prefix, self.name, job.id, job.attempt, job.entry, client=pipe)
        answers = dict(zip((job.entry for job in todo), self._scripts.execute(pipe) if todo else [], strict=True))
        for job in batch:
            if job.entry in started or int(answers[job.entry]) == 1:
                self._launch(job)
            else:
                log.info("job %s attempt %s: no longer ours (cancelled or taken back); skipped", job.id, job.attempt)
                self._free_slots(1)
