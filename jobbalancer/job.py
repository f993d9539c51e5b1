"""The job: its spec and its options, validated, and what ``submit.lua`` is given to create it.

The record as read back from Redis (:class:`Record`, :class:`Status`, :class:`Kind`, the exit
codes) lives in :mod:`jobbalancer.record`; this module re-exports it, so importers need one module.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobbalancer.errors import InvalidJob
from jobbalancer.record import EXIT_CANCELLED as EXIT_CANCELLED
from jobbalancer.record import EXIT_REJECTED as EXIT_REJECTED
from jobbalancer.record import EXIT_TIMED_OUT as EXIT_TIMED_OUT
from jobbalancer.record import TERMINAL as TERMINAL
from jobbalancer.record import Kind as Kind
from jobbalancer.record import Record as Record
from jobbalancer.record import Status as Status

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FUNC_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
PRIORITY_LIMIT = 1_000_000
BACKOFF_LIMIT_S = 7 * 24 * 3600.0
# json.dumps(wire, separators=(",", ":"), allow_nan=False), without making an encoder per call
_SPEC_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_backoff(backoff_s: float | None, backoff_max_s: float) -> None:
    if backoff_s is not None and not (_number(backoff_s) and 0 <= backoff_s <= BACKOFF_LIMIT_S):
        raise InvalidJob(f"backoff must be from 0 to {BACKOFF_LIMIT_S:g} seconds, got {backoff_s!r}")
    if not (_number(backoff_max_s) and 0 < backoff_max_s <= BACKOFF_LIMIT_S):
        raise InvalidJob(f"backoff_max must be > 0 and at most {BACKOFF_LIMIT_S:g} seconds, got {backoff_max_s!r}")


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
            return _SPEC_ENCODER.encode(self.to_wire())
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


# uuid.uuid4().hex without building a UUID object (a fifth of the cost): the version and variant bits.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)


def new_id() -> str:
    """A new job id: a random version-4 UUID as 32 hex digits, as ``uuid.uuid4().hex`` gives."""
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


SUBMIT_FIELDS = ("kind", "spec", "queue", "priority", "retries", "watchdog", "realtime")


def record_fields(spec: Spec, options: Options) -> dict[str, str]:
    """The initial hash fields of a job record (the Lua submit script adds created_at and status)."""
    return dict(zip(SUBMIT_FIELDS, [spec.kind.value, spec.encode(), *options_argv(options)[:5]], strict=True))


def options_argv(options: Options, extra: Mapping[str, Any] | None = None) -> list[str]:
    """``submit.lua``'s arguments after a job's spec, for options already validated: queue, priority,
    retries, watchdog, realtime, then the JSON extra (``extra`` with the backoff and the
    dependencies; '' when there is none).

    It depends on the options alone, so a batch of jobs with the same options builds it once.
    """
    watchdog = "" if options.watchdog_s is None else repr(float(options.watchdog_s))
    argv = [options.queue, str(options.priority), str(options.retries or 0), watchdog, "1" if options.realtime else "0"]
    more = dict(extra or {})
    if options.backoff_s:  # read by complete.lua when a failed attempt is retried
        backoff = {"backoff": repr(float(options.backoff_s)), "backoff_max": repr(float(options.backoff_max_s))}
        more["fields"] = {**more.get("fields", {}), **backoff}
    if options.depends_on:
        more["deps"] = list(dict.fromkeys(options.depends_on))
        more["after"] = "any" if options.after_any else "all"
    argv.append(json.dumps(more, separators=(",", ":")) if more else "")
    return argv


def submit_argv(job_id: str, spec: Spec, options: Options, extra: Mapping[str, Any] | None = None) -> list[str]:
    """One job's arguments of ``submit.lua`` (after the prefix): the id, the record fields, the JSON extra."""
    return [job_id, spec.kind.value, spec.encode(), *options_argv(options.validated(), extra)]


SUBMIT_BATCH = 100  # jobs per submit.lua call: its fixed cost shared, Redis never held for long
SUBMIT_BATCH_CHARS = 1 << 20  # and at most about this much of specs and options per call


def submit_batches(jobs: Iterable[Sequence[str]]) -> Iterator[list[str]]:
    """Jobs' ``submit.lua`` arguments (``submit_argv`` each) joined into the arguments of as few
    calls as the batch bounds allow, in order; a job bigger than the bound goes alone."""
    batch: list[str] = []
    count = size = 0
    for argv in jobs:
        cost = sum(map(len, argv))
        if count and (count == SUBMIT_BATCH or size + cost > SUBMIT_BATCH_CHARS):
            yield batch
            batch, count, size = [], 0, 0
        batch += argv
        count, size = count + 1, size + cost
    if batch:
        yield batch


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
