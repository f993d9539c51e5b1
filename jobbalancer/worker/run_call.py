"""Running call jobs in the worker's pooled children (:mod:`jobbalancer.worker.call_pool`).

The slot thread running a job reads its child's messages itself (``poll`` on the message pipe and
on a wake-up socket that a kill request writes to), so a call costs no thread hand-off and no
Event in the worker: a no-op call is one write and, usually, one read. A slot's batch of calls
goes to its child in one write (:func:`run_calls`).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence

from jobbalancer.job import Spec, Status
from jobbalancer.worker.call_pool import CallPool, Child
from jobbalancer.worker.output import Output, utf8_safe
from jobbalancer.worker.running import Assignment, Context, JobRun, Outcome, StopReason, killed_outcome

log = logging.getLogger("jobbalancer.worker")

ANSWER_WAIT_S = 0.05  # at most between looks while a child's answer to a cancel is due


class _Call:
    """What came back from the child for one job."""

    __slots__ = ("ctx", "job_id", "out", "result", "error", "failed", "done")

    def __init__(self, ctx: Context, job_id: str) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.out: Output | None = None  # made on the first output: most calls print nothing
        self.result = ""
        self.error = ""
        self.failed = False
        self.done = False

    def output(self) -> Output:
        if self.out is None:
            self.out = self.ctx.output(self.job_id)
        return self.out

    def output_text(self, fd: int) -> str:
        if self.out is None:
            return ""
        return self.out.stdout if fd == 1 else self.out.stderr

    def take(self, line: bytes) -> bool:
        """Take one message line of this job; True once it ended the job."""
        tag = line[:1]
        try:
            if tag == b"R":
                self.result, self.done = line[1:].decode("utf-8", "replace"), True
            elif tag == b"E":
                self.error, self.failed, self.done = str(json.loads(line[1:])), True, True
            elif tag in (b"1", b"2"):
                self.output().write_text(int(tag), str(json.loads(line[1:])))
            else:
                raise ValueError("unknown message")
        except ValueError:
            log.warning("job %s: its worker child sent a line it should not: %.200r", self.job_id, line)
        return self.done

    def close(self) -> None:
        if self.out is not None:
            self.out.close()

    def ended(self) -> Outcome:
        """The outcome of a job that ended in the child (``done``); its output is closed."""
        self.close()
        if self.failed:
            return Outcome.failed(utf8_safe(self.error or "the call failed"), 1, self.out)
        return Outcome(Status.SUCCEEDED, 0, result=self.result, stdout=self.output_text(1), stderr=self.output_text(2))


class _Batch:
    """A slot's call jobs from ``first`` on, sent to one child together and read back in order."""

    def __init__(
        self, child: Child, runs: Sequence[JobRun], specs: Sequence[Spec], first: int, skip: Callable[[int], None]
    ) -> None:
        self.child = child
        self.runs = runs
        self.specs = specs
        self.first = first
        self.lines: deque[bytes] = deque()  # read from the child, not yet taken by a job
        self.cancelled: set[int] = set()  # jobs whose K line was sent; the child answers each:
        self.skipped: set[int] = set()  # S: taken out before they began (they never run)
        self.begun: set[int] = set()  # B: they had begun (or ended) when the K came
        self._skip = skip

    def send(self) -> bool:
        """Every job from ``first`` on, in one write; False if the child is gone."""
        for run in self.runs[self.first :]:
            run.wake = self.child.wake_for()
        return self.child.send(b"".join(_job_line(self.runs[i].assignment, self.specs[i]) for i in self.indices()))

    def indices(self) -> range:
        return range(self.first, len(self.runs))

    def cancel_waiting(self, current: int) -> None:
        """Send a K line for each job behind ``current`` that was asked to stop since it was sent."""
        for i in range(current + 1, len(self.runs)):
            job = self.runs[i].assignment
            if self.runs[i].kill_reason is not None and i not in self.cancelled:
                self.cancelled.add(i)
                self.child.send(b"K" + json.dumps([job.id, job.attempt]).encode() + b"\n")

    def add(self, lines: list[bytes]) -> None:
        """Lines read from the child; the answers to cancels (S, B) are taken at once."""
        for line in lines:
            tag = line[:1]
            if tag not in (b"S", b"B"):
                self.lines.append(line)
                continue
            try:
                key = json.loads(line[1:])
            except ValueError:
                log.warning("worker child %s sent a line it should not: %.200r", self.child.pid, line)
                continue
            for i in self.cancelled - self.skipped - self.begun:
                if [self.runs[i].assignment.id, self.runs[i].assignment.attempt] == key:
                    (self.skipped if tag == b"S" else self.begun).add(i)
                    if tag == b"S":
                        self._skip(i)

    def unanswered(self, i: int) -> bool:
        """Whether job ``i`` was cancelled in the child and the child has not said yet if it began."""
        return i in self.cancelled and i not in self.skipped and i not in self.begun


def _job_line(job: Assignment, spec: Spec) -> bytes:
    return json.dumps([job.id, job.attempt, spec.func, list(spec.args), dict(spec.kwargs)]).encode() + b"\n"


def await_call(batch: _Batch, current: int, call: _Call) -> StopReason | None:
    """Read the child's messages until the job at ``current`` ends, its watchdog expires or a kill
    is asked for (then the child is killed; the lines it left stay in ``batch.lines``).

    Returns:
        Why the job was killed, or None when it ended by itself (``call.done``, or the child died).
    """
    run, child = batch.runs[current], batch.child
    watchdog = run.assignment.watchdog_s
    deadline = None if watchdog is None else run.started + watchdog
    while True:
        if current in batch.skipped:  # the child took it out: it never began (no line is its)
            return None
        while batch.lines:
            if call.take(batch.lines.popleft()):
                return None
        if deadline is not None and time.monotonic() >= deadline:
            run.request_kill(StopReason.WATCHDOG)
        reason = run.kill_reason
        if reason is not None and not batch.unanswered(current):  # else: skipped, or begun? the child says
            child.kill(call.ctx.settings().kill_grace)
            batch.add(child.drain())  # what it wrote before it died
            return reason
        batch.cancel_waiting(current)
        # waiting for the child's answer after the deadline: no busy loop, its line wakes the read
        floor = ANSWER_WAIT_S if batch.unanswered(current) else 0.0
        lines = child.read(None if deadline is None else max(floor, deadline - time.monotonic()))
        if lines is None:
            return None
        batch.add(lines)


def run_calls(
    runs: Sequence[JobRun],
    specs: Sequence[Spec],
    ctx: Context,
    pool: CallPool,
    on_turn: Callable[[int], object],
    on_skipped: Callable[[int, Outcome | None], object],
) -> list[Outcome | None]:
    """Run call jobs in order in a child from ``pool``, all sent to it in one write: the child
    goes from one job to the next without waiting for the worker. Each run is finished as it ends.

    ``on_turn(i)`` is called as job ``i`` (> 0) begins, when the worker reads the end of the job
    before it; its watchdog counts from then. A kill request for a job that has not begun cancels
    it in the child at once, even while another runs: it never runs, and ``on_skipped(i, outcome)``
    is called then, for the caller to record its outcome (None: not ours to record) at once. A kill
    for the job that runs kills the child; the jobs behind it, which never began, go to a fresh one.

    Returns:
        Each job's outcome to record; None for one killed to be handed back, or skipped.
    """
    outcomes: list[Outcome | None] = [None] * len(runs)
    ended: set[int] = set()

    def end(i: int, outcome: Outcome | None) -> None:
        outcomes[i] = outcome
        ended.add(i)
        runs[i].finish()

    def skip(i: int) -> None:
        run = runs[i]
        on_skipped(i, killed_outcome(run, run.kill_reason or StopReason.CANCEL, ctx.output(run.assignment.id)))
        end(i, None)

    first = 0
    while first < len(runs):
        run = runs[first]
        if first in ended:  # skipped in a child that then died
            first += 1
        elif run.kill_reason is not None:  # asked to stop before it was sent: it never runs
            end(first, killed_outcome(run, run.kill_reason, ctx.output(run.assignment.id)))
            first += 1
        else:
            try:
                child = pool.acquire()
            except (OSError, subprocess.SubprocessError) as exc:
                for i in range(first, len(runs)):
                    end(i, Outcome.failed(f"cannot start a worker child: {exc}"))
                break
            first = _run_in_child(_Batch(child, runs, specs, first, skip), ctx, pool, end, on_turn)
    return outcomes


def _run_in_child(
    batch: _Batch,
    ctx: Context,
    pool: CallPool,
    end: Callable[[int, Outcome | None], None],
    on_turn: Callable[[int], object],
) -> int:
    """Read the batch's jobs to their ends; returns the first job still to run (all ran:
    ``len(batch.runs)``): the child was killed or died before it began."""
    child = batch.child
    sent = batch.send()
    for i in batch.indices():
        run = batch.runs[i]
        if i in batch.skipped:
            continue
        if i:
            run.started = time.monotonic()
            on_turn(i)
        call = _Call(ctx, run.assignment.id)
        reason = await_call(batch, i, call) if sent else None
        if i in batch.skipped:
            continue
        if reason is None and call.done:
            end(i, call.ended())
            continue
        pool.discard(child)
        if reason is None:
            call.close()
            died, code = child.how_it_died(), child.proc.returncode
            end(i, Outcome.failed(f"worker child died ({died})", 128 - code if code < 0 else code, call.out))
            return i + 1
        return _killed(batch, i, call, ctx, end) + 1
    pool.release(child)
    return len(batch.runs)


def _killed(batch: _Batch, i: int, call: _Call, ctx: Context, end: Callable[[int, Outcome | None], None]) -> int:
    """The outcomes once the child was killed for job ``i``; returns the last job the child began.

    The kill may land just after the job ended: its end is then among the lines the child left,
    and stands. The child had begun the next job, which the kill cut short: that one fails,
    saying so (it may have done part of its work, so it is not run again unasked).
    """
    killed = batch.runs[i]
    while True:
        while batch.lines and not call.take(batch.lines.popleft()):
            pass
        later = [k for k in range(i + 1, len(batch.runs)) if k not in batch.skipped]
        if not call.done or not later:
            break
        end(i, call.ended())  # it ended before the kill landed: the next one ran
        i = later[0]
        call = _Call(ctx, batch.runs[i].assignment.id)
    run = batch.runs[i]
    if call.done:
        end(i, call.ended())
        return i
    call.close()
    if run.kill_reason is not None:  # the job killed (or a later one that was asked to stop too)
        end(i, killed_outcome(run, run.kill_reason, call.output()))
    else:
        why = f"its worker child was killed as it began (for job {killed.assignment.id}, which had just ended)"
        end(i, Outcome.failed(why, 128 + signal.SIGKILL, call.out))
    return i


def run_call(run: JobRun, spec: Spec, ctx: Context, pool: CallPool) -> Outcome | None:
    """Run one call job in a child from ``pool``.

    Returns:
        The outcome to record, or None when the job was killed to be handed back.
    """
    return run_calls([run], [spec], ctx, pool, lambda _i: None, lambda _i, _outcome: None)[0]
