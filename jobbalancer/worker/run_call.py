"""Running a call job in a pool of long-lived child processes (:mod:`jobbalancer.worker.child`).

A child is started once and reused, so a job pays for neither an interpreter start nor its
imports again. A child killed by a watchdog or a cancel, or one that died, is not reused: the
next job starts a fresh one. The pool never holds more children than the worker has slots,
because each running call job holds exactly one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

from jobbalancer.job import Spec, Status
from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.kill import kill_tree, signal_group
from jobbalancer.worker.output import Output, utf8_safe
from jobbalancer.worker.running import Context, JobRun, Outcome, killed_outcome, supervise

log = logging.getLogger("jobbalancer.worker")


class CallJob:
    """The worker's side of one call running in a child."""

    def __init__(self, out: Output, wake: threading.Event) -> None:
        self.out = out
        self.wake = wake
        self.ended = threading.Event()  # the reply came, or the child died
        self.reply: dict[str, Any] | None = None

    def end(self) -> None:
        self.ended.set()
        self.wake.set()


class Child:
    """One ``python -m jobbalancer.worker.child`` process and the thread reading its messages.

    Note: the child asks for SIGKILL when the *thread* that started it exits (PR_SET_PDEATHSIG
    is per thread), so children are started from the worker's long-lived job threads.
    """

    def __init__(self, cwd: str, paths: Sequence[str]) -> None:
        job_r, job_w = os.pipe()
        msg_r, msg_w = os.pipe()
        argv = [sys.executable, "-m", "jobbalancer.worker.child", str(job_r), str(msg_w), str(os.getpid())]
        try:
            self.proc = subprocess.Popen(
                [*argv, json.dumps(list(paths))],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                pass_fds=(job_r, msg_w),
                start_new_session=True,
            )
        except BaseException:
            os.close(job_w)
            os.close(msg_r)
            raise
        finally:
            os.close(job_r)
            os.close(msg_w)
        self.exited = threading.Event()  # the process is gone and reaped
        self._jobs = os.fdopen(job_w, "w", encoding="utf-8")
        self._current: CallJob | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(msg_r,), name=f"jb-child-{self.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, job: CallJob, message: dict[str, Any]) -> None:
        """Hand the child a job; if the child is gone, the job ends at once with no reply."""
        with self._lock:
            self._current = job
            dead = self.exited.is_set()
        if dead:
            job.end()
            return
        try:
            self._jobs.write(json.dumps(message) + "\n")
            self._jobs.flush()
        except OSError:
            pass  # it died just now; its reader ends the job when it sees the pipe close

    def kill(self, grace_s: float) -> None:
        """Kill the child and everything its job started; returns once it is reaped."""
        kill_tree(self.pid, grace_s, self.exited)
        self.exited.wait()

    def close(self) -> None:
        """Kill the child at once (it holds no job, or one being given up)."""
        if not self.exited.is_set():
            signal_group(self.pid, signal.SIGKILL)
            self.exited.wait()
        with contextlib.suppress(OSError):  # a broken pipe: the child is gone, which is the point
            self._jobs.close()

    def how_it_died(self) -> str:
        code = self.proc.returncode
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, encoding="utf-8", errors="replace") as messages:
            for line in messages:
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("worker child %d sent a line that is not JSON: %.200r", self.pid, line)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        self.proc.wait()
        with self._lock:
            self.exited.set()
            job, self._current = self._current, None
        if job is not None:
            job.end()

    def _dispatch(self, message: dict[str, Any]) -> None:
        job = self._current
        if job is None:
            return  # output from a thread a finished job left behind: nobody to give it to
        if message.get("t") == "out":
            job.out.write_text(2 if message.get("fd") == 2 else 1, str(message.get("d", "")))
        elif message.get("t") == "done":
            with self._lock:
                self._current = None
            job.reply = message
            job.end()


class CallPool:
    """Idle children waiting for the next call job; started lazily, reused, replaced when killed."""

    def __init__(self, cwd: str, paths: Sequence[str], guardian: Guardian) -> None:
        self._guardian = guardian
        self._cwd = cwd
        self._paths = [os.path.abspath(p) for p in paths] + [cwd]
        self._idle: list[Child] = []
        self._live: set[Child] = set()
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Child:
        """An idle live child, or a new one. Raises OSError when none can be started."""
        with self._lock:
            if self._closed:
                raise OSError("the worker is stopping")
            while self._idle:
                child = self._idle.pop()
                if not child.exited.is_set():
                    return child
                self._live.discard(child)
        child = Child(self._cwd, self._paths)
        self._guardian.watch(child.pid)
        with self._lock:
            self._live.add(child)
        return child

    def release(self, child: Child) -> None:
        with self._lock:
            if not self._closed and not child.exited.is_set():
                self._idle.append(child)
                return
        self.discard(child)

    def discard(self, child: Child) -> None:
        child.close()
        self._guardian.forget(child.pid)
        with self._lock:
            self._live.discard(child)

    def close(self) -> None:
        """Kill every child; the worker is stopping."""
        with self._lock:
            self._closed = True
            children, self._idle = list(self._live), []
            self._live.clear()
        for child in children:
            child.close()
            self._guardian.forget(child.pid)


def run_call(run: JobRun, spec: Spec, ctx: Context, pool: CallPool) -> Outcome | None:
    """Run a call job in a child from ``pool``.

    Returns:
        The outcome to record, or None when the job was killed to be handed back.
    """
    job = run.assignment
    out = ctx.output(job.id)
    if run.kill_reason is not None:
        return killed_outcome(run, run.kill_reason, out)
    try:
        child = pool.acquire()
    except (OSError, subprocess.SubprocessError) as exc:
        return Outcome.failed(f"cannot start a worker child: {exc}")
    call = CallJob(out, run.wake)
    message = {"t": "job", "id": job.id, "attempt": job.attempt, "func": spec.func}
    child.send(call, {**message, "args": list(spec.args), "kwargs": dict(spec.kwargs)})
    reason = supervise(run, call.ended, lambda: child.kill(ctx.settings().kill_grace))
    out.close()
    if reason is not None or call.reply is None:
        pool.discard(child)
        if reason is not None:
            return killed_outcome(run, reason, out)
        code = child.proc.returncode
        return Outcome.failed(f"worker child died ({child.how_it_died()})", 128 - code if code < 0 else code, out)
    pool.release(child)
    if call.reply.get("ok"):
        result = json.dumps(call.reply.get("result"))
        return Outcome(Status.SUCCEEDED, 0, result=result, stdout=out.stdout, stderr=out.stderr)
    return Outcome.failed(utf8_safe(str(call.reply.get("error") or "the call failed")), 1, out)
