"""The job record as read back from Redis: its status, its kind, and the lenient parsing of its fields.

A job record is a Redis hash of strings (``HGETALL <p>:job:<id>``); :meth:`Record.from_hash` is
the one place that maps those strings to typed values. :mod:`jobbalancer.job` re-exports every
name here, so ``from jobbalancer.job import Record, Status`` keeps working.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jobbalancer.errors import CorruptRecord

# Exit codes a waiting `jb submit --wait` reports for outcomes that are not a process exit.
EXIT_TIMED_OUT = 124
EXIT_REJECTED = 75
EXIT_CANCELLED = 130


class Status(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED, Status.REJECTED})


class Kind(StrEnum):
    COMMAND = "command"
    CALL = "call"


# Record fields are read leniently: a field that does not parse (a record edited by hand) reads
# as absent instead of making the whole record unreadable.
def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _ms_to_s(value: str | None) -> float | None:
    """A Redis-clock time in ms (``retry_at``) as epoch seconds, like the record's other times."""
    ms = _float(value)
    return None if ms is None else ms / 1000


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _params(text: str | None) -> dict[str, str] | None:
    params = _json(text)
    return {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else None


def _status(job_id: str, text: str) -> Status:
    try:
        return Status(text)
    except ValueError:
        raise CorruptRecord(f"job {job_id} has an unknown status {text!r} (its record was edited by hand?)") from None


@dataclass(frozen=True)
class Record:
    """A job record as read back from Redis."""

    id: str
    kind: str
    spec: dict[str, Any]
    queue: str
    status: Status
    worker: str | None
    attempts: int
    exit_code: int | None
    watchdog: float | None
    priority: int
    retries: int
    realtime: bool
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    error: str | None
    result: Any
    stdout: str
    stderr: str
    depends_on: tuple[str, ...] = ()
    after: str | None = None
    due_at: float | None = None
    schedule: str | None = None
    script: str | None = None  # the named script it was made from, and the parameter values it got
    params: dict[str, str] | None = None
    failures: int = 0  # failed attempts so far: the retries spent
    retry_at: float | None = None  # epoch s (Redis's clock) of the next retry of a job waiting out its backoff
    backoff: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[str, str]) -> Record:
        spec_text = raw.get("spec") or "{}"
        try:
            spec = json.loads(spec_text)
        except ValueError:
            spec = {"unparsed": spec_text}
        result_text = raw.get("result")
        return cls(
            id=job_id,
            kind=raw.get("kind", ""),
            spec=spec if isinstance(spec, dict) else {"unparsed": spec_text},
            queue=raw.get("queue", ""),
            status=_status(job_id, raw.get("status", "queued")),
            worker=raw.get("worker") or None,
            attempts=_int(raw.get("attempts")) or 0,
            exit_code=_int(raw.get("exit_code")),
            watchdog=_float(raw.get("watchdog")),
            priority=_int(raw.get("priority")) or 0,
            retries=_int(raw.get("retries")) or 0,
            realtime=raw.get("realtime") == "1",
            created_at=_float(raw.get("created_at")),
            started_at=_float(raw.get("started_at")),
            finished_at=_float(raw.get("finished_at")),
            error=raw.get("error") or None,
            result=_json(result_text),
            stdout=raw.get("stdout", ""),
            stderr=raw.get("stderr", ""),
            depends_on=tuple(raw.get("depends_on", "").split()),
            after=raw.get("after") or None,
            due_at=_float(raw.get("due_at")),
            schedule=raw.get("schedule") or None,
            script=raw.get("script") or None,
            params=_params(raw.get("params")),
            failures=_int(raw.get("failures")) or 0,
            retry_at=_ms_to_s(raw.get("retry_at")),
            backoff=_float(raw.get("backoff")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as ``jb status --json`` prints it."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            **self.spec,
            "queue": self.queue,
            "status": self.status.value,
            "worker": self.worker,
            "attempts": self.attempts,
            "exit_code": self.exit_code,
            "watchdog": self.watchdog,
            "priority": self.priority,
            "retries": self.retries,
            "realtime": self.realtime,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
        }
        # Present only for jobs that use them, so other records read as before.
        optional = {
            "depends_on": list(self.depends_on),
            "after": self.after,
            "due_at": self.due_at,
            "schedule": self.schedule,
            "script": self.script,
            "params": self.params,
            "failures": self.failures,
            "retry_at": self.retry_at,
            "backoff": self.backoff,
        }
        out.update({name: value for name, value in optional.items() if value})
        if self.kind == Kind.CALL:
            out["result"] = self.result
        return out

    @property
    def exit_status(self) -> int:
        """The exit code ``jb submit --wait`` reports for this (finished) job."""
        if self.status is Status.TIMED_OUT:
            return EXIT_TIMED_OUT
        if self.status is Status.REJECTED:
            return EXIT_REJECTED
        if self.status is Status.CANCELLED:
            return EXIT_CANCELLED
        if self.exit_code is not None:
            return self.exit_code
        return 0 if self.status is Status.SUCCEEDED else 1
