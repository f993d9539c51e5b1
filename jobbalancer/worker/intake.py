"""Taking entries from the worker's stream into free slots, and starting them (fenced).

A mixin of :class:`jobbalancer.worker.loop.Worker` (whose serving thread calls it): ``take.lua``
reads and starts up to the free slots' worth of entries in one step; once a take has said how far
the group has delivered, a blocking ``XREAD`` waits for the next entry after that with
``take.lua`` sent right behind it, and the waiting thread runs the first batch itself. While the
slots take short jobs in batches, a take gives a free slot up to a batch's worth too (never a
second job while another slot has none). After a lost reply it finds what it read but does not
run. The jobs taken go to slot threads (:mod:`jobbalancer.worker.slots`).
"""

from __future__ import annotations

import logging
from typing import Any

from jobbalancer import lane
from jobbalancer.keys import WORKER_GROUP, Keys
from jobbalancer.worker.control import Blocking
from jobbalancer.worker.running import Assignment
from jobbalancer.worker.slots import Slots, share

log = logging.getLogger("jobbalancer.worker")

READ_BLOCK_MS = 1000


class Intake(Slots):
    """Reading and starting entries; the worker provides the state it uses."""

    concurrency: int
    keys: Keys
    _busy: int
    _reader: Blocking | None

    def _take(self, free: int) -> bool:
        """take.lua: read and start waiting entries for ``free`` slots in one round trip.

        While the slots' jobs are short (they take batches: ``slots.next_take``), each free slot
        gets up to a batch's worth too, so a refill after a slot found the stream empty costs a
        round trip per batch rather than per job; the jobs go to as many slots as they can. After
        a whole blocking wait found nothing, refills start again at one job a slot.

        Returns whether it found any entry to run; when it finds none, the caller waits
        (:meth:`_wait_and_take`).
        """
        return self._launch_taken(self._scripts.take(self.prefix, self.name, self._take_count(free)), free)[0]

    def _wait_and_take(self, free: int) -> list[Assignment]:
        """Wait for an entry after the last one the group delivered, then take.lua, in one write.

        Redis runs the take right after the wait returns (an entry came, the timeout passed, or a
        stop unblocked it), so a job that arrives at an idle worker starts one round trip after
        it was assigned. The wait is on the reader's own connection, which a stop can unblock.

        Returns the first batch taken, which the calling thread runs itself (its slot is taken:
        the job waits for no hand-over to another thread); the others go to slot threads.
        """
        assert self._reader is not None
        stream, after = self.keys.worker_jobs(self.name), self._delivered or "0-0"
        wait = ("XREAD", "BLOCK", READ_BLOCK_MS, "STREAMS", stream, after)
        take = ("EVALSHA", self._scripts.sha("take"), 0, self.prefix, self.name, self._take_count(free))
        woke, reply = lane.checked(lane.on(self._reader.conn.connection, [wait, take]))
        if not lane.entries(woke):
            self._want = 1  # idle for a whole block: what comes next may be long, start one by one
        return self._launch_taken(reply, free, keep=True)[1]

    def _take_count(self, free: int) -> int:
        return free * max(1, self._want)

    def _launch_taken(self, reply: list[Any], free: int, keep: bool = False) -> tuple[bool, list[Assignment]]:
        """Hand the jobs of a take.lua reply to slot threads: whether there were any, and, with
        ``keep``, the first batch, kept for the calling thread to run (its slot taken too)."""
        jobs = self._taken(reply)
        batches = share(jobs, free)
        with self._cond:
            if self._stopping:
                return True, []  # started but not run: release.lua hands them back
            self._busy += len(batches)
        kept = batches.pop(0) if keep and batches else []
        for batch in batches:
            self._launch(batch)
        return bool(jobs), kept

    def _read_pending(self) -> list[Assignment]:
        """After a lost reply: the entries this worker read but is not running (they may be started).

        Each takes a slot; ``_restart`` then launches or starts them.
        """
        stream = self.keys.worker_jobs(self.name)
        reply = lane.one(
            self._client, *lane.read_group(WORKER_GROUP, self.name, stream, after="0", count=self.concurrency * 4)
        )
        with self._cond:
            running = {run.assignment.entry for run in self._running.values()} | self._recorder.unwritten()
            batch = [
                Assignment.from_entry(entry, fields)
                for entry, fields in lane.entries(reply)
                if fields and entry not in running
            ][: max(0, self.concurrency - self._busy)]
            self._busy += len(batch)
        return batch

    def _restart(self, batch: list[Assignment], held: int) -> None:
        """After a lost reply, start.lua for what was read but not run, in one round trip; launch
        those that are still ours in the ``held`` slots taken for them, and give back the rest.

        The lost call may have run on the server: a job already running for this worker at this
        attempt is launched without starting it again.
        """
        if not batch:
            self._free_slots(held)
            return
        pipe = self._client.pipeline(transaction=False)
        for job in batch:
            pipe.hmget(self.keys.job(job.id), "status", "worker", "attempts")
        states = pipe.execute()
        mine = {job.entry: ["running", self.name, job.attempt] for job in batch}
        started = {job.entry for job, state in zip(batch, states, strict=True) if state == mine[job.entry]}
        todo = [job for job in batch if job.entry not in started]
        calls = [("start", (self.prefix, self.name, *job.started_by())) for job in todo]
        answers = dict(zip((job.entry for job in todo), self._scripts.many(calls) if todo else [], strict=True))
        ours: list[Assignment] = []
        for job in batch:
            if job.entry in started or int(answers[job.entry]) == 1:
                ours.append(job)
            else:
                log.info("job %s attempt %s: no longer ours (cancelled or taken back); skipped", job.id, job.attempt)
        batches = share(ours, held)
        for jobs in batches:
            self._launch(jobs)
        if len(batches) < held:
            self._free_slots(held - len(batches))
