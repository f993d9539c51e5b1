"""The job: its spec, its options, its status and its record, with pure encode/decode.

A job record is a Redis hash of strings (``HGETALL <p>:job:<id>``); this module is the one place
that knows how those strings map to typed values.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from jobbalancer.errors import CorruptRecord, InvalidJob

# Exit codes a waiting `jb submit --wait` reports for outcomes that are not a process exit.
EXIT_TIMED_OUT = 124
EXIT_REJECTED = 75
EXIT_CANCELLED = 130

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FUNC_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
PRIORITY_LIMIT = 1_000_000
BACKOFF_LIMIT_S = 7 * 24 * 3600.0


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_backoff(backoff_s: float | None, backoff_max_s: float) -> None:
    if backoff_s is not None and not (_number(backoff_s) and 0 <= backoff_s <= BACKOFF_LIMIT_S):
        raise InvalidJob(f"backoff must be from 0 to {BACKOFF_LIMIT_S:g} seconds, got {backoff_s!r}")
    if not (_number(backoff_max_s) and 0 < backoff_max_s <= BACKOFF_LIMIT_S):
        raise InvalidJob(f"backoff_max must be > 0 and at most {BACKOFF_LIMIT_S:g} seconds, got {backoff_max_s!r}")


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


@dataclass(frozen=True)
class Options:
    """How a job is to be run; the same names as the CLI flags."""

    watchdog_s: float | None = None
    realtime: bool = False
    queue: str = "default"
    retries: int | None = None  # None: not given, so the queue's default (jb retries QUEUE), else 0
    priority: int = 0
    id: str | None = None
    depends_on: tuple[str, ...] = ()
    after_any: bool = False
    backoff_s: float | None = None  # None: not given, so the queue's default backoff, else none
    backoff_max_s: float = 300.0

    def validated(self) -> Options:
        if self.watchdog_s is not None and not (math.isfinite(self.watchdog_s) and self.watchdog_s > 0):
            raise InvalidJob(f"watchdog must be a number of seconds > 0, got {self.watchdog_s!r}")
        if not QUEUE_PATTERN.match(self.queue):
            raise InvalidJob(f"queue {self.queue!r} is not a valid name (letters, digits, '.', '_', '-'; at most 64)")
        if self.retries is not None and not (isinstance(self.retries, int) and 0 <= self.retries <= 100):
            raise InvalidJob(f"retries must be an integer from 0 to 100, got {self.retries!r}")
        _check_backoff(self.backoff_s, self.backoff_max_s)
        if not (isinstance(self.priority, int) and abs(self.priority) <= PRIORITY_LIMIT):
            raise InvalidJob(f"priority must be an integer within ±{PRIORITY_LIMIT}, got {self.priority!r}")
        if self.id is not None and not ID_PATTERN.match(self.id):
            raise InvalidJob(f"id {self.id!r} is not valid (1-128 of letters, digits and ._:@+-)")
        for dep in self.depends_on:
            if not isinstance(dep, str) or not ID_PATTERN.match(dep):
                raise InvalidJob(f"dependency id {dep!r} is not a valid job id")
            if dep == self.id:
                raise InvalidJob(f"job {dep} cannot depend on itself (a dependency cycle)")
        if self.after_any and not self.depends_on:
            raise InvalidJob("after_any needs depends_on: the jobs to run after")
        return self


@dataclass(frozen=True)
class Spec:
    """What to run: a shell command, a program with its arguments (``argv``, no shell), or a Python
    callable by import path."""

    kind: Kind
    command: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    func: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] = ()

    @classmethod
    def for_command(cls, command: str, cwd: str | None = None, env: Mapping[str, str] | None = None) -> Spec:
        if not isinstance(command, str) or not command.strip():
            raise InvalidJob("command must be a non-empty string")
        if "\0" in command:
            raise InvalidJob("command holds a NUL character")
        return cls(Kind.COMMAND, command=command, cwd=_checked_cwd(cwd), env=_checked_env(env))

    @classmethod
    def for_argv(cls, argv: Any, cwd: str | None = None, env: Mapping[str, str] | None = None) -> Spec:
        """A program run directly with these arguments: no shell, so nothing in them is interpreted."""
        if isinstance(argv, str) or not isinstance(argv, list | tuple) or not argv:
            raise InvalidJob("argv must be a non-empty list of strings: the program, then its arguments")
        if not all(isinstance(arg, str) and "\0" not in arg for arg in argv) or not argv[0]:
            raise InvalidJob("argv must hold strings without NUL characters, the first one not empty")
        return cls(Kind.COMMAND, cwd=_checked_cwd(cwd), env=_checked_env(env), argv=tuple(argv))

    @classmethod
    def for_call(cls, func: str | Callable[..., Any], args: Any = (), kwargs: Mapping[str, Any] | None = None) -> Spec:
        path = func_path(func)
        spec = cls(Kind.CALL, func=path, args=tuple(args), kwargs=dict(kwargs or {}))
        spec.encode()  # refuse what JSON cannot carry now, not on the worker
        return spec

    def to_wire(self) -> dict[str, Any]:
        if self.kind is Kind.COMMAND:
            wire: dict[str, Any] = {"argv": list(self.argv)} if self.argv else {"command": self.command}
            if self.cwd:
                wire["cwd"] = self.cwd
            if self.env:
                wire["env"] = dict(self.env)
            return wire
        return {"func": self.func, "args": list(self.args), "kwargs": dict(self.kwargs)}

    def encode(self) -> str:
        try:
            return json.dumps(self.to_wire(), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidJob(f"arguments must be JSON-serialisable: {exc}") from None

    @classmethod
    def decode(cls, kind: str, text: str) -> Spec:
        """Parse a spec off the wire; raises InvalidJob naming what is wrong."""
        try:
            wire = json.loads(text)
        except ValueError as exc:
            raise InvalidJob(f"spec is not valid JSON: {exc}") from None
        if not isinstance(wire, dict):
            raise InvalidJob("spec must be a JSON object")
        if kind == Kind.COMMAND and "argv" in wire:
            return cls.for_argv(wire["argv"], wire.get("cwd"), wire.get("env"))
        if kind == Kind.COMMAND:
            return cls.for_command(wire.get("command"), wire.get("cwd"), wire.get("env"))  # type: ignore[arg-type]
        if kind == Kind.CALL:
            args, kwargs = wire.get("args", []), wire.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise InvalidJob("call args must be a list and kwargs an object")
            return cls.for_call(wire.get("func", ""), args, kwargs)
        raise InvalidJob(f"unknown job kind {kind!r}")


def _checked_cwd(cwd: Any) -> str | None:
    if cwd is not None and not (isinstance(cwd, str) and "\0" not in cwd):
        raise InvalidJob(f"cwd must be a directory path, got {cwd!r}")
    return cwd or None


def _checked_env(env: Any) -> dict[str, str]:
    if env is not None and not isinstance(env, Mapping):
        raise InvalidJob("env must be an object of NAME: string")
    checked = dict(env or {})
    for key, value in checked.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key or not isinstance(value, str):
            raise InvalidJob(f"env entry {key!r} is not NAME=string")
        if "\0" in value:
            raise InvalidJob(f"env entry {key!r} holds a NUL character")
    return checked


def func_path(func: str | Callable[..., Any]) -> str:
    """``package.module:function`` for a callable or an import-path string."""
    if callable(func):
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
        if not module or module == "__main__" or "<" in qualname:
            raise InvalidJob(f"{func!r} has no importable path; define it at module level in an importable module")
        return f"{module}:{qualname}"
    if not isinstance(func, str) or not FUNC_PATTERN.match(func):
        raise InvalidJob(f"function {func!r} must be an import path like 'package.module:function'")
    return func


def new_id() -> str:
    return uuid.uuid4().hex


def record_fields(spec: Spec, options: Options) -> dict[str, str]:
    """The initial hash fields of a job record (the Lua submit script adds created_at and status)."""
    return {
        "kind": spec.kind.value,
        "spec": spec.encode(),
        "queue": options.queue,
        "priority": str(options.priority),
        "retries": str(options.retries or 0),
        "watchdog": "" if options.watchdog_s is None else repr(float(options.watchdog_s)),
        "realtime": "1" if options.realtime else "0",
    }


SUBMIT_FIELDS = ("kind", "spec", "queue", "priority", "retries", "watchdog", "realtime")


def submit_argv(job_id: str, spec: Spec, options: Options, extra: Mapping[str, Any] | None = None) -> list[str]:
    """The ARGV of ``submit.lua`` after the prefix: the id, the record fields, and its optional JSON extra."""
    fields = record_fields(spec, options.validated())
    argv = [job_id, *(fields[name] for name in SUBMIT_FIELDS)]
    more = dict(extra or {})
    if options.backoff_s:  # read by complete.lua when a failed attempt is retried
        backoff = {"backoff": repr(float(options.backoff_s)), "backoff_max": repr(float(options.backoff_max_s))}
        more["fields"] = {**more.get("fields", {}), **backoff}
    if options.depends_on:
        more["deps"] = list(dict.fromkeys(options.depends_on))
        more["after"] = "any" if options.after_any else "all"
    if more:
        argv.append(json.dumps(more, separators=(",", ":")))
    return argv


def check_submitted(job_id: str, reply: Any) -> bool:
    """Read ``submit.lua``'s reply: True when created, False when the id existed; raise when refused."""
    if isinstance(reply, bytes):
        reply = reply.decode()
    if isinstance(reply, str) and reply.startswith("unknown "):
        dep = reply.split(" ", 1)[1]
        raise InvalidJob(f"job {job_id} depends on {dep!r}, which does not exist (never submitted, deleted or expired)")
    if isinstance(reply, str) and reply.startswith("cycle "):
        dep = reply.split(" ", 1)[1]
        raise InvalidJob(f"job {job_id} cannot depend on {dep!r}: {dep} waits for {job_id} (a dependency cycle)")
    return bool(reply == 1)


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
