"""What goes over the wire: request and response bodies of the HTTP API, as pydantic models.

They are the OpenAPI document's schemas too, so they follow the library's records field by field
(``Record.to_dict``, ``worker_info``, ``Settings``) rather than inventing names of their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

from jobbalancer.balancer.policies import BUILTIN_POLICIES, IMPORT_PATH
from jobbalancer.job import BACKOFF_LIMIT_S, FUNC_PATTERN, ID_PATTERN, PRIORITY_LIMIT, QUEUE_PATTERN, Status
from jobbalancer.scripts_store import NAME_PATTERN, PARAM_PATTERN
from jobbalancer.web.later import AfterAny, At, Cron, Delay, DependsOn

POLICY_PATTERN = "|".join([*(f"^{name}$" for name in sorted(BUILTIN_POLICIES)), IMPORT_PATH.pattern])


class Problem(BaseModel):
    """Why a request was refused; ``field`` names the offending input when there is one."""

    detail: str
    field: str | None = None


class _Options(BaseModel):
    """How to run a job; the same names as ``jb submit``'s flags."""

    model_config = ConfigDict(extra="forbid")

    watchdog: float | None = Field(None, gt=0, description="Kill the job's process tree after this many seconds.")
    realtime: bool = Field(False, description="Reject at once (409) when no worker has a free slot.")
    queue: str = Field("default", pattern=QUEUE_PATTERN.pattern)
    retries: int | None = Field(
        None, ge=0, le=100, description="Extra attempts after a failure (0: none); left out: the queue's default."
    )
    backoff: float | None = Field(
        None, ge=0, le=BACKOFF_LIMIT_S, description="Seconds before the first retry, doubling after (default: queue's)."
    )
    backoff_max: float = Field(300, gt=0, le=BACKOFF_LIMIT_S, description="The longest wait between retries.")
    priority: int = Field(0, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT, description="Higher runs first among waiting jobs.")
    id: str | None = Field(None, pattern=ID_PATTERN.pattern, description="Your own id; an existing id gives that job.")
    # Scheduling and dependencies (types and limits in later.py); the library refuses what they cannot combine.
    delay: Delay = None
    at: At = None
    cron: Cron = None
    depends_on: DependsOn
    after_any: AfterAny = False


ENV_NAME = r"^[^=\x00]+$"
NO_NUL = r"^[^\x00]*$"
NoNul = Annotated[str, StringConstraints(pattern=NO_NUL)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]


def _env_schema(schema: dict[str, Any]) -> None:
    # pydantic says patternProperties, which lets other names through; say what is validated.
    schema.pop("patternProperties", None)
    schema.update(additionalProperties={"type": "string", "pattern": NO_NUL}, propertyNames={"pattern": ENV_NAME})


class CommandJob(_Options):
    """A shell command, run with ``/bin/sh -c`` on the worker."""

    command: str = Field(pattern=r"^[^\x00]*\S[^\x00]*$", description="The command line (not only blanks).")
    cwd: NoNul | None = Field(None, description="Working directory on the worker.")
    env: dict[EnvName, NoNul] = Field(
        default_factory=dict, description="Extra environment variables.", json_schema_extra=_env_schema
    )


class ArgvJob(_Options):
    """A program and its arguments, run without a shell: nothing in them is interpreted."""

    argv: list[NoNul] = Field(
        min_length=1,
        description="The program, then its arguments.",
        json_schema_extra={"prefixItems": [{"type": "string", "minLength": 1}]},
    )
    cwd: NoNul | None = Field(None, description="Working directory on the worker.")
    env: dict[EnvName, NoNul] = Field(
        default_factory=dict, description="Extra environment variables.", json_schema_extra=_env_schema
    )


class CallJob(_Options):
    """A call of a Python function by import path, with JSON arguments."""

    func: str = Field(pattern=FUNC_PATTERN.pattern, description="'package.module:function'.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON).")


ParamName = Annotated[str, StringConstraints(pattern=PARAM_PATTERN.pattern)]


def _params_schema(schema: dict[str, Any]) -> None:
    schema.pop("patternProperties", None)
    schema.update(
        additionalProperties={"type": "string", "pattern": NO_NUL}, propertyNames={"pattern": PARAM_PATTERN.pattern}
    )


class ScriptJob(_Options):
    """A run of a named script (``/api/scripts``), resolved now: later edits of the script change nothing."""

    script: str = Field(pattern=NAME_PATTERN.pattern, description="The script's name.")
    params: dict[ParamName, NoNul] = Field(
        default_factory=dict, description="Parameter values by name.", json_schema_extra=_params_schema
    )


def _job_kind(body: Any) -> str:
    for key, kind in (("func", "call"), ("argv", "argv"), ("script", "script")):
        if isinstance(body, dict) and key in body:
            return kind
    return "command"


# Exactly one of the shapes, chosen by the presence of "func", "argv" or "script", so errors are about that shape only.
JobIn = Annotated[
    Annotated[CommandJob, Tag("command")]
    | Annotated[ArgvJob, Tag("argv")]
    | Annotated[CallJob, Tag("call")]
    | Annotated[ScriptJob, Tag("script")],
    Discriminator(_job_kind),
]
JOB_KINDS = ("command", "argv", "call", "script")


class JobOut(BaseModel):
    """A job record, as ``jb status --json`` prints it; the spec's fields (command, func, ...) are inline."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    queue: str
    status: Status
    worker: str | None
    attempts: int
    exit_code: int | None
    watchdog: float | None
    priority: int
    retries: int
    realtime: bool
    created_at: float | None = Field(description="Epoch seconds (Redis's clock).")
    started_at: float | None
    finished_at: float | None
    error: str | None
    command: str | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    func: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    script: str | None = Field(None, description="The named script the job was made from.")
    params: dict[str, str] | None = Field(None, description="The script's parameter values for this run.")
    failures: int | None = Field(None, description="Failed attempts so far (retries spent); left out when none.")
    retry_at: float | None = Field(None, description="Epoch seconds of the next retry, while it waits out its backoff.")
    backoff: float | None = Field(None, description="Seconds before the first retry, doubling after.")
    result: Any = Field(None, description="A call's return value, once it succeeded.")
    stdout: str | None = Field(None, description="Captured stdout (the tail); left out of job lists.")
    stderr: str | None = Field(None, description="Captured stderr (the tail); left out of job lists.")


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next`` as ``cursor`` for the next page (null: no more)."""

    jobs: list[JobOut]
    next: str | None


class Logs(BaseModel):
    """A job's output: the recorded tails once finished, the live output so far before."""

    id: str
    status: Status
    finished: bool
    stdout: str
    stderr: str


class CancelOut(BaseModel):
    """``cancelled``, ``cancelling`` (a running job being killed), or the status it had already finished with."""

    id: str
    outcome: str


class Event(BaseModel):
    """One job state change from the events stream."""

    event_id: str = Field(description="Stream id; resume after it with ?since=.")
    at: float = Field(description="Epoch seconds (Redis's clock).")
    job: str
    status: str
    worker: str | None


class WorkerOut(BaseModel):
    """One registered worker, as ``jb workers --json`` shows it."""

    model_config = ConfigDict(extra="allow")

    name: str
    host: str | None
    pid: int | None
    state: str = Field(description="running, draining, dead, or unknown.")
    concurrency: int | None = Field(description="Slots: jobs it runs at once.")
    running: int
    queues: list[str]
    cpu: float | None = Field(description="Host CPU use, percent.")
    mem: float | None = Field(description="Host memory use, percent.")
    load: float | None = Field(description="Host one-minute load average.")
    last_seen_s: float
    jobs_done: int


class DrainOut(BaseModel):
    """What the worker was told: ``draining`` (take no new jobs) or ``running`` (take them again)."""

    name: str
    state: str


class SettingsOut(BaseModel):
    """The live cluster settings (``jb config``)."""

    policy: str
    max_jobs_per_worker: int
    heartbeat_timeout: float
    prefetch: int
    poison_limit: int
    kill_grace: float
    result_ttl: int
    output_cap: int


class SettingsPatch(BaseModel):
    """Settings to change; the others stay as they are."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = Field(
        None, pattern=POLICY_PATTERN, description="A built-in policy or an importable 'package.module:Class'."
    )
    max_jobs_per_worker: int | None = Field(None, ge=0, description="Caps every worker's slots; 0: no cap.")
    heartbeat_timeout: float | None = Field(None, gt=0, description="Seconds of silence after which a worker is dead.")
    prefetch: int | None = Field(None, ge=0, description="Jobs a worker may be given beyond its free slots.")
    poison_limit: int | None = Field(None, ge=1, description="Lost deliveries after which a job is dead-lettered.")
    kill_grace: float | None = Field(None, ge=0, description="Seconds between SIGTERM and SIGKILL.")
    result_ttl: int | None = Field(None, ge=1, description="Seconds a finished job record is kept.")
    output_cap: int | None = Field(None, ge=1, description="Bytes of stdout and of stderr kept per job.")


class Overview(BaseModel):
    """The dashboard's first screen in one call: workers, waiting depth per queue, jobs by status."""

    workers: list[WorkerOut]
    waiting: dict[str, int]
    jobs: dict[str, int]
