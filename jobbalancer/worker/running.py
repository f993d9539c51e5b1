"""One job attempt on this worker: what it is, how it may be stopped, and how it ended."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import redis

from jobbalancer.config import Settings
from jobbalancer.job import EXIT_CANCELLED, EXIT_TIMED_OUT, Status
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from jobbalancer.worker.guardian import Guardian
from jobbalancer.worker.output import Output

log = logging.getLogger("jobbalancer.worker")


class StopReason(StrEnum):
    """Why a running job is killed. Only the first two are recorded; the others hand the job back."""

    CANCEL = "cancel"
    WATCHDOG = "watchdog"
    LOST = "lost"  # a balancer declared this worker dead and re-ran its jobs
    SHUTDOWN = "shutdown"  # the worker stops; release.lua hands the job back
    SUPERSEDED = "superseded"  # a newer attempt of the same job arrived here


@dataclass(frozen=True)
class Assignment:
    """One entry of the worker's stream: ``{id, attempt, kind, spec, watchdog}``."""

    entry: str
    id: str
    attempt: str
    kind: str
    spec: str
    watchdog_s: float | None

    @classmethod
    def from_entry(cls, entry: str, fields: Mapping[str, str]) -> Assignment:
        return cls(
            entry=entry,
            id=fields.get("id", ""),
            attempt=fields.get("attempt", ""),
            kind=fields.get("kind", ""),
            spec=fields.get("spec", ""),
            watchdog_s=watchdog_s(fields.get("watchdog")),
        )

    def started_by(self) -> tuple[str, str, str]:
        """start.lua's arguments after the prefix and worker: the job, its attempt and the entry."""
        return self.id, self.attempt, self.entry


def watchdog_s(field: str | None) -> float | None:
    """An entry's ``watchdog`` field in seconds; None for none (empty, zero or not a number)."""
    if not field:
        return None
    try:
        return float(field) or None
    except ValueError:
        return None


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as complete.lua records it."""

    status: Status
    exit_code: int | None = None
    error: str = ""
    result: str = ""
    stdout: str = ""
    stderr: str = ""

    @classmethod
    def failed(cls, error: str, exit_code: int | None = None, out: Output | None = None) -> Outcome:
        if out is None:
            return cls(Status.FAILED, exit_code, error)
        return cls(Status.FAILED, exit_code, error, stdout=out.stdout, stderr=out.stderr)


@dataclass(frozen=True)
class Context:
    """What a runner needs from its worker, and the recording of an outcome."""

    client: redis.Redis
    scripts: Scripts
    keys: Keys
    worker: str
    settings: Callable[[], Settings]
    guardian: Guardian

    def output(self, job_id: str) -> Output:
        return Output(self.client, self.keys.output(job_id), self.settings().output_cap)


class JobRun:
    """A job attempt that holds a slot: its assignment, and a thread-safe way to ask for its end.

    Its Events are made when first needed: most no-op calls never wait on either, and a worker
    makes one JobRun per job.
    """

    __slots__ = ("assignment", "started", "_wake", "_done", "_finished", "_reason", "_lock", "_begun", "_settled")

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.started = time.monotonic()
        self._wake: threading.Event | None = None
        self._done: threading.Event | None = None  # made only for a newer attempt that waits for this one
        self._finished = False  # its slot is free again
        self._reason: StopReason | None = None
        self._lock = threading.Lock()
        self._begun = False  # its slot began running it
        self._settled = False  # ended before it began (cancelled while waiting in its batch)

    @property
    def wake(self) -> threading.Event:
        """Set on anything the runner must look at: exit, kill request. A runner may replace it."""
        wake = self._wake
        if wake is None:
            with self._lock:
                if self._wake is None:
                    self._wake = threading.Event()
                wake = self._wake
        return wake

    @wake.setter
    def wake(self, event: threading.Event) -> None:
        self._wake = event

    @property
    def kill_reason(self) -> StopReason | None:
        return self._reason

    def finish(self) -> None:
        """Its slot is free again: a newer attempt of the job waiting in :meth:`wait_finished` may start."""
        with self._lock:
            self._finished = True
            done = self._done
        if done is not None:
            done.set()

    def wait_finished(self) -> None:
        """Wait until :meth:`finish` was called."""
        with self._lock:
            if self._finished:
                return
            if self._done is None:
                self._done = threading.Event()
            done = self._done
        done.wait()

    def begin(self) -> bool:
        """Its slot's turn to run it: False if it was settled meanwhile (then it must not run)."""
        with self._lock:
            self._begun = not self._settled
            return self._begun

    @property
    def begun(self) -> bool:
        return self._begun

    def settle_unbegun(self) -> bool:
        """Claim a job its slot has not begun (it waits behind others of its batch), so that the
        caller records its end now and the slot skips it. False once it has begun."""
        with self._lock:
            if self._begun or self._settled:
                return False
            self._settled = True
            return True

    def request_kill(self, reason: StopReason) -> None:
        """Ask the runner to kill the job; the first reason given is the one that counts."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self.wake.set()


def supervise(run: JobRun, ended: threading.Event, kill: Callable[[], None]) -> StopReason | None:
    """Wait until the job ends by itself, its watchdog expires or a kill is asked for.

    ``ended`` must be set, and ``run.wake`` with it, when the job ends by itself. On a kill this
    calls ``kill`` and waits for ``ended``.

    Returns:
        Why the job was killed, or None when it ended by itself.
    """
    watchdog = run.assignment.watchdog_s
    deadline = None if watchdog is None else run.started + watchdog
    while True:
        run.wake.clear()  # cleared before the checks so that no wake-up in between is lost
        if ended.is_set():
            return None
        if deadline is not None and time.monotonic() >= deadline:
            run.request_kill(StopReason.WATCHDOG)
        reason = run.kill_reason
        if reason is not None:
            kill()
            ended.wait()
            return reason
        run.wake.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))


def killed_outcome(run: JobRun, reason: StopReason, out: Output) -> Outcome | None:
    """The outcome of a killed job, or None when it is not ours to record (it is handed back)."""
    if reason is StopReason.WATCHDOG:
        error = f"watchdog: killed after {run.assignment.watchdog_s:g} s"
        return Outcome(Status.TIMED_OUT, EXIT_TIMED_OUT, error, stdout=out.stdout, stderr=out.stderr)
    if reason is StopReason.CANCEL:
        return Outcome(Status.CANCELLED, EXIT_CANCELLED, "cancelled", stdout=out.stdout, stderr=out.stderr)
    return None
