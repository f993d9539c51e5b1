"""A slot's thread: run a batch of jobs, record them and take the next batch in one round trip, repeat.

A batch is one job, or, while the slot's jobs are short, up to MAX_TAKE jobs started together by
``take.lua`` and run one after another (see :func:`next_take`); a batch of call jobs is sent to
the slot's child in one write (:func:`jobbalancer.worker.run_call.run_calls`).

A mixin of :class:`jobbalancer.worker.loop.Worker`; it uses the worker's lock, its table of
running jobs and its connection.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from jobbalancer.errors import InvalidJob
from jobbalancer.job import Kind, Spec
from jobbalancer.scripts import Scripts
from jobbalancer.worker.call_pool import CallPool
from jobbalancer.worker.recorder import Recorder, outcome_args, report
from jobbalancer.worker.run_call import run_call, run_calls
from jobbalancer.worker.run_command import run_command
from jobbalancer.worker.running import Assignment, Context, JobRun, Outcome, StopReason, watchdog_s

log = logging.getLogger("jobbalancer.worker")

Adopted = tuple[JobRun, JobRun | None]  # a run, and an older attempt of its job still running here
Ended = tuple[JobRun, Outcome | None]  # a run and its outcome (None: killed, not ours to record)
TAKE_FIELDS = ("id", "attempt", "kind", "spec", "watchdog")  # after the entry id, as take.lua returns them


MAX_TAKE = 16  # jobs a slot takes at once while its jobs are short
SHORT_JOB_S = 0.005  # a batch whose jobs took less than this each: the next one may be twice as big
CACHED_SPEC_CHARS = 512  # specs up to this long are decoded once (256 kept: at most 128 KiB)
RESTAMP_S = 0.1  # a batch's later jobs that waited longer than this get their start time anew


def next_take(want: int, per_job_s: float) -> int:
    """How many jobs a slot takes next, after a batch of ``want`` took ``per_job_s`` a job.

    The jobs of a batch are started (status ``running``) together, so a batch only grows while its
    jobs are short: a job may then show ``running`` before its turn by at most the batch's span.
    One slow job brings the slot back to one job at a time.
    """
    return min(MAX_TAKE, want * 2) if per_job_s < SHORT_JOB_S else 1


@functools.lru_cache(maxsize=256)
def decoded(kind: str, text: str) -> Spec:
    """``Spec.decode``, remembered: a drain of one task sends the same spec text many times over.

    Specs are frozen and the runners copy what they pass on, so one may serve many jobs. An
    invalid spec raises every time (exceptions are not cached).
    """
    return Spec.decode(kind, text)


def worker_error(exc: Exception) -> Outcome:
    """The outcome of a job the worker failed to run (a bug here must fail the job, not the worker)."""
    return Outcome.failed(f"worker error: {type(exc).__name__}: {exc}")


def spec_of(job: Assignment) -> Spec:
    """The job's spec; raises InvalidJob."""
    return decoded(job.kind, job.spec) if len(job.spec) <= CACHED_SPEC_CHARS else Spec.decode(job.kind, job.spec)


def calls_only(batch: list[Adopted]) -> list[Spec] | None:
    """The specs of a batch of two or more call jobs with no older attempt running here, which go
    to one child together; None for any other batch (run one by one)."""
    if len(batch) < 2:
        return None
    specs = []
    for run, previous in batch:
        job = run.assignment
        if previous is not None or job.kind != Kind.CALL.value:
            return None
        try:
            specs.append(spec_of(job))
        except InvalidJob:
            return None  # its failure is recorded by the one-by-one path
    return specs


def share(jobs: list[Assignment], slots: int) -> list[list[Assignment]]:
    """``jobs`` in order, in at most ``slots`` batches whose sizes differ by at most one.

    Every slot gets a job before any gets two: batches only hold what the free slots cannot.
    """
    n = min(slots, len(jobs))
    if n <= 0:
        return []
    size, extra = divmod(len(jobs), n)
    batches, i = [], 0
    for k in range(n):
        j = i + size + (1 if k < extra else 0)
        batches.append(jobs[i:j])
        i = j
    return batches


def taken(flat: list[Any]) -> list[Assignment]:
    """The jobs in a take.lua reply (six fields each: entry, then TAKE_FIELDS)."""
    jobs = []
    for i in range(0, len(flat) - 5, 6):
        entry, job_id, attempt, kind, spec, watchdog = flat[i : i + 6]
        jobs.append(Assignment(entry, job_id, attempt, kind, spec, watchdog_s(watchdog)))
    return jobs


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
    _delivered: str | None  # the group's last delivered entry, as the last take.lua that read saw it
    _executor: ThreadPoolExecutor
    _want: int  # jobs per slot the slots' last batches asked for: the serving thread's refills follow it

    def _free_slots(self, n: int) -> None:
        """Give ``n`` slots back; the worker provides it."""
        raise NotImplementedError

    def _launch(self, jobs: list[Assignment]) -> None:
        """A slot thread for ``jobs``: one job, or a batch started together."""
        self._executor.submit(self._execute, self._adopt(jobs))

    def _adopt(self, jobs: list[Assignment], ended: list[Ended] | None = None) -> list[Adopted]:
        """Enter ``jobs`` in the table of running jobs, after taking ``ended`` out of it (one lock)."""
        adopted: list[Adopted] = [(JobRun(job), None) for job in jobs]
        superseded: list[JobRun] = []
        with self._cond:
            running = self._running
            for run, _outcome in ended or ():
                if running.get(run.assignment.id) is run:
                    del running[run.assignment.id]
            for i, (run, _none) in enumerate(adopted):
                previous = running.get(run.assignment.id)
                running[run.assignment.id] = run
                if previous is not None:
                    adopted[i] = (run, previous)
                    superseded.append(previous)
        for previous in superseded:  # a newer attempt of a job still running here: the old one is stale
            previous.request_kill(StopReason.SUPERSEDED)
        return adopted

    # -- running jobs --------------------------------------------------------------------------

    def _execute(self, batch: list[Adopted]) -> None:
        """A slot's thread: run a batch of started jobs in turn; record them all and take the next
        batch in one round trip (take.lua); repeat.

        Taking the next jobs here, rather than freeing the slot for the serving thread to fill, keeps
        a busy slot to one round trip between batches. A batch is one job unless the slot's
        recent jobs were short: then it doubles, up to MAX_TAKE (see :func:`next_take`).
        """
        want = len(batch)
        while batch:
            began = time.monotonic()
            specs = calls_only(batch)
            ended = self._one_by_one(batch) if specs is None else self._calls_together(batch, specs)
            want = self._want = next_take(want, (time.monotonic() - began) / len(batch))
            batch = self._after(ended, want)

    def _one_by_one(self, batch: list[Adopted]) -> list[Ended]:
        ended: list[Ended] = []
        stamped = time.monotonic()
        for i, (run, previous) in enumerate(batch):
            if i and time.monotonic() - stamped > RESTAMP_S:  # a slow job held the rest back
                self._restamp([later for later, _previous in batch[i:]])
                stamped = time.monotonic()
            ended.append((run, self._attempt(run, previous)))
            run.finish()  # its process is gone: a newer attempt of the job may start
        return ended

    def _calls_together(self, batch: list[Adopted], specs: list[Spec]) -> list[Ended]:
        """A batch of call jobs, sent to one child at once (``run_calls``): the child runs one
        after another without waiting for this thread in between."""
        begun = [(run, spec) for (run, _previous), spec in zip(batch, specs, strict=True) if run.begin()]
        ended: list[Ended] = [(run, None) for run, _previous in batch if not run.begun]  # cancelled while it waited
        if not begun:
            return ended
        runs, run_specs = [run for run, _spec in begun], [spec for _run, spec in begun]
        stamped = runs[0].started = time.monotonic()

        def on_turn(i: int) -> None:
            nonlocal stamped
            if time.monotonic() - stamped > RESTAMP_S:  # a slow job held the rest back
                self._restamp(runs[i:])
                stamped = time.monotonic()

        skipped: set[int] = set()

        def on_skipped(i: int, outcome: Outcome | None) -> None:
            skipped.add(i)
            job = runs[i].assignment
            log.info("job %s attempt %s: stopped (%s) before it began", job.id, job.attempt, runs[i].kill_reason)
            if outcome is not None:  # recorded now, not once the batch ends
                self._recorder.record(job, outcome)

        try:
            outcomes = run_calls(runs, run_specs, self._ctx, self._calls, on_turn, on_skipped)
        except Exception as exc:  # a bug here must fail the jobs, not the worker
            log.exception("worker %s: running a batch of %d calls failed", self.name, len(runs))
            outcomes = [worker_error(exc)] * len(runs)
        for i, (run, outcome) in enumerate(zip(runs, outcomes, strict=True)):
            if outcome is None and i not in skipped:
                job = run.assignment
                log.info("job %s attempt %s: killed (%s), not recorded", job.id, job.attempt, run.kill_reason)
            run.finish()
            ended.append((run, outcome))
        return ended

    def _restamp(self, runs: list[JobRun]) -> None:
        """start.lua 'again' for jobs of a batch that waited: their start time and deadline from now.

        Best effort: if Redis fails, they keep their batch's start time (the watchdog backstop has
        kill_grace + heartbeat_timeout of slack) and the worker's own watchdog still counts from
        each job's real start.
        """
        calls = [("start", (self.prefix, self.name, *run.assignment.started_by(), "again")) for run in runs]
        try:
            self._scripts.many(calls, raise_on_error=False)
        except redis.RedisError as exc:
            log.warning("worker %s: could not restamp %d waiting job(s): %s", self.name, len(runs), exc)

    def _attempt(self, run: JobRun, previous: JobRun | None) -> Outcome | None:
        job = run.assignment
        if not run.begin():
            return None  # cancelled while it waited in its batch: already recorded
        try:
            if previous is not None:
                previous.wait_finished()
            run.started = time.monotonic()  # its watchdog counts from here, also in a batch
            log.debug("job %s attempt %s: started", job.id, job.attempt)
            outcome = self._run(run)
            if outcome is None:
                log.info("job %s attempt %s: killed (%s), not recorded", job.id, job.attempt, run.kill_reason)
            return outcome
        except Exception as exc:  # a bug here must fail the job, not the worker
            log.exception("job %s attempt %s: the worker failed running it", job.id, job.attempt)
            return worker_error(exc)

    def _after(self, ended: list[Ended], want: int) -> list[Adopted]:
        """Record the outcomes; while the worker takes jobs, take up to ``want`` more for this slot.

        The runs stay in the table of running jobs until their outcomes are written or handed to
        the recorder, so that recovering after a lost reply never mistakes them for unstarted.
        """
        outcomes = [(run.assignment, outcome) for run, outcome in ended if outcome is not None]
        following: list[Assignment] = []
        try:
            if not self._stopping:  # a plain read: a stop that comes just after is seen by the next batch
                following = self._record_and_take(outcomes, want)
            else:
                for job, outcome in outcomes:
                    self._recorder.record(job, outcome)
        finally:
            adopted = self._adopt(following, ended)
            if not following:
                self._free_slots(1)
        return adopted

    def _record_and_take(self, outcomes: list[tuple[Assignment, Outcome]], want: int) -> list[Assignment]:
        args: list[str] = []
        for job, outcome in outcomes:
            args += outcome_args(job, outcome)
        try:
            reply = self._scripts.take(self.prefix, self.name, want, *args)
        except (redis.ConnectionError, redis.TimeoutError):
            for job, outcome in outcomes:  # the recorder retries; the take's reply may be lost:
                self._recorder.record(job, outcome)
            self._recover = True  # the main loop looks for entries read but not run
            return []
        except redis.ResponseError as exc:  # a script error: no outcome was answered for
            for job, outcome in outcomes:
                report(job, outcome, exc)
            return []
        for (job, outcome), code in zip(outcomes, reply[0], strict=True):
            report(job, outcome, code)
        return self._taken(reply)

    def _taken(self, reply: list[Any]) -> list[Assignment]:
        """The jobs of a take.lua reply. A take that read also says up to where the group has
        delivered: the serving thread's next wait for entries starts after that."""
        if len(reply) > 2:
            self._delivered = str(reply[2])
        return taken(reply[1])

    def _run(self, run: JobRun) -> Outcome | None:
        try:
            spec = spec_of(run.assignment)
        except InvalidJob as exc:
            return Outcome.failed(f"invalid job: {exc}")
        if spec.kind is Kind.COMMAND:
            return run_command(run, spec, self._ctx)
        return run_call(run, spec, self._ctx, self._calls)
