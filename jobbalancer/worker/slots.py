"""A slot's thread: run a job, record it and take the slot's next job in one round trip, repeat.

A mixin of :class:`jobbalancer.worker.loop.Worker`; it uses the worker's lock, its table of
running jobs and its connection.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from jobbalancer.errors import InvalidJob
from jobbalancer.job import Kind, Spec
from jobbalancer.scripts import Scripts
from jobbalancer.worker.recorder import Recorder, complete, report
from jobbalancer.worker.run_call import CallPool, run_call
from jobbalancer.worker.run_command import run_command
from jobbalancer.worker.running import Assignment, Context, JobRun, Outcome, StopReason

log = logging.getLogger("jobbalancer.worker")

Adopted = tuple[JobRun, JobRun | None]  # a run, and an older attempt of its job still running here
TAKE_FIELDS = ("id", "attempt", "kind", "spec", "watchdog")  # after the entry id, as take.lua returns them


def taken(flat: list[Any]) -> list[Assignment]:
    """The jobs in a take.lua reply (six fields each)."""
    return [
        Assignment.from_entry(flat[i], dict(zip(TAKE_FIELDS, flat[i + 1 : i + 6], strict=True)))
        for i in range(0, len(flat), 6)
    ]


class Slots:
    """Running jobs in slot threads."""

    prefix: str
    name: str
    _client: redis.Redis
    _scripts: Scripts
    _cond: threading.Condition
    _running: dict[str, JobRun]
    _stopping: bool
    _recover: bool
    _ctx: Context
    _recorder: Recorder
    _calls: CallPool
    _executor: ThreadPoolExecutor

    def _free_slots(self, n: int) -> None:
        """Give ``n`` slots back; the worker provides it."""
        raise NotImplementedError

    def _launch(self, job: Assignment) -> None:
        self._executor.submit(self._execute, self._adopt(job))

    def _adopt(self, job: Assignment) -> Adopted:
        run = JobRun(job)
        with self._cond:
            previous = self._running.get(job.id)
            self._running[job.id] = run
        if previous is not None:  # a newer attempt of a job still running here: the old one is stale
            previous.request_kill(StopReason.SUPERSEDED)
        return run, previous

    # -- running jobs --------------------------------------------------------------------------

    def _execute(self, adopted: Adopted | None) -> None:
        """A slot's thread: run a job; record it and take the next entry in one round trip; repeat.

        Taking the next job here, rather than freeing the slot for the main thread to fill, keeps
        a busy slot to one round trip between jobs.
        """
        while adopted is not None:
            run, previous = adopted
            adopted = self._after(run, self._attempt(run, previous))

    def _attempt(self, run: JobRun, previous: JobRun | None) -> Outcome | None:
        job = run.assignment
        try:
            if previous is not None:
                previous.done.wait()
                run.started = time.monotonic()
            log.debug("job %s attempt %s: started", job.id, job.attempt)
            outcome = self._run(run)
            if outcome is None:
                log.info("job %s attempt %s: killed (%s), not recorded", job.id, job.attempt, run.kill_reason)
            return outcome
        except Exception as exc:  # a bug here must fail the job, not the worker
            log.exception("job %s attempt %s: the worker failed running it", job.id, job.attempt)
            return Outcome.failed(f"worker error: {type(exc).__name__}: {exc}")

    def _after(self, run: JobRun, outcome: Outcome | None) -> Adopted | None:
        """Record ``outcome``; while the worker takes jobs, take the next one for this slot."""
        job = run.assignment
        with self._cond:
            if self._running.get(job.id) is run:
                del self._running[job.id]
            taking = not self._stopping
        following: Assignment | None = None
        try:
            if outcome is not None and taking:
                following = self._record_and_take(job, outcome)
            elif outcome is not None:
                self._recorder.record(job, outcome)
        finally:
            run.done.set()
            if following is None:
                self._free_slots(1)
        return None if following is None else self._adopt(following)

    def _record_and_take(self, job: Assignment, outcome: Outcome) -> Assignment | None:
        pipe = self._client.pipeline(transaction=False)
        complete(self._ctx, job, outcome, pipe)
        self._scripts.take(self.prefix, self.name, 1, client=pipe)
        try:
            answer, flat = self._scripts.execute(pipe, raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError):
            self._recorder.record(job, outcome)  # it retries; the take's reply may be lost:
            self._recover = True  # the main loop looks for entries read but not run
            return None
        report(job, outcome, answer)
        if isinstance(flat, Exception) or not flat:  # NOGROUP or nothing waiting: the main loop reads
            return None
        return taken(flat)[0]

    def _run(self, run: JobRun) -> Outcome | None:
        try:
            spec = Spec.decode(run.assignment.kind, run.assignment.spec)
        except InvalidJob as exc:
            return Outcome.failed(f"invalid job: {exc}")
        if spec.kind is Kind.COMMAND:
            return run_command(run, spec, self._ctx)
        return run_call(run, spec, self._ctx, self._calls)
