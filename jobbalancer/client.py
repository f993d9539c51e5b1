"""The producer side: submit and enqueue jobs, follow them, and read their outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from jobbalancer import schedule  # its rq-scheduler part loads when a job is first scheduled
from jobbalancer.config import Settings, key_prefix, redis_url
from jobbalancer.connection import connect
from jobbalancer.defaults import QueueDefaults, SubmitRules
from jobbalancer.durability import WaitReplicas
from jobbalancer.errors import (
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStateError,
    JobTimedOut,
    NoSuchJob,
    WaitTimeout,
)
from jobbalancer.job import TERMINAL, Kind, Options, Record, Spec, Status, check_submitted, new_id, submit_argv
from jobbalancer.keys import Keys
from jobbalancer.schedule.when import When, make_when
from jobbalancer.scripts import Scripts
from jobbalancer.scripts_store import ScriptStore
from jobbalancer.views import Views

FOLLOW_BLOCK_MS = 1000
OUTCOME_ERRORS = {
    Status.FAILED: JobFailed,
    Status.TIMED_OUT: JobTimedOut,
    Status.CANCELLED: JobCancelled,
    Status.REJECTED: JobRejected,
}


class Output(NamedTuple):
    """A job's captured output (the capped tails once it has finished)."""

    stdout: str
    stderr: str


class Chunk(NamedTuple):
    """One piece of live output: ``fd`` 1 for stdout, 2 for stderr."""

    fd: int
    data: str


class Job:
    """A handle on one job; cheap to create, every method asks Redis afresh."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def record(self) -> Record:
        return self.client.record(self.id)

    def status(self) -> Status:
        return self.record().status

    def info(self) -> dict[str, Any]:
        """The job record as a dict, the same as ``jb status --json``."""
        return self.record().to_dict()

    def wait(self, timeout: float | None = None) -> Record:
        """Block until the job has finished and return its final record."""
        return self.client.wait(self.id, timeout)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return a call's return value, or a command's stdout.

        Raises:
            JobFailed, JobTimedOut, JobCancelled, JobRejected: the job ended that way; ``.record`` has it.
            WaitTimeout: it did not finish within ``timeout`` seconds.
        """
        record = self.wait(timeout)
        error = OUTCOME_ERRORS.get(record.status)
        if error is not None:
            raise error(record)
        return record.result if record.kind == Kind.CALL else record.stdout

    def logs(self) -> Output:
        return self.client.output(self.id)

    def cancel(self) -> str:
        return self.client.cancel(self.id)


class Client(Views):
    """Talks to one jobbalancer cluster: a Redis URL and a key prefix.

    Args:
        url: Redis URL (``redis+sentinel://`` too); defaults to ``JB_REDIS_URL``, then ``redis://127.0.0.1:6379/0``.
        prefix: key prefix; defaults to ``JB_PREFIX``, then ``jb``.
        wait_replicas: replicas that must have a submitted job before ``submit`` returns (Redis
            ``WAIT``); defaults to ``JB_WAIT_REPLICAS``, then 0 (no wait). Fewer in time raise
            :class:`~jobbalancer.errors.NotReplicated`.
        wait_timeout_s: how long to wait for them; defaults to ``JB_WAIT_REPLICAS_TIMEOUT``, then 1 s.
    """

    def __init__(
        self,
        url: str | None = None,
        prefix: str | None = None,
        *,
        connection: redis.Redis | None = None,
        wait_replicas: int | None = None,
        wait_timeout_s: float | None = None,
    ) -> None:
        self.url = redis_url(url)
        self.prefix = key_prefix(prefix)
        self.keys = Keys(self.prefix)
        # ``connection``: an open client that decodes replies (jobbalancer.compat shares rq's server this way)
        self.redis: redis.Redis = connect(self.url) if connection is None else connection
        self.scripts = Scripts(self.redis)
        self.replicas = WaitReplicas.from_env(wait_replicas, wait_timeout_s)
        self._rules = SubmitRules(self.redis, self.keys)  # spec size limit, queues' retry defaults
        self.named_scripts = ScriptStore(self.redis, self.keys, self._rules)
        """The cluster's named scripts (``<p>:scripts``): ``all``, ``get``, ``save``, ``delete``."""

    def close(self) -> None:
        self.redis.close()

    # -- producing ----------------------------------------------------------------------------

    def submit(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Job:
        """Submit a shell command (run with ``/bin/sh -c``); options as in :func:`make_options`.

        A list instead of a string is a program and its arguments, run without a shell: in
        ``["echo", "x; touch /tmp/pwned"]`` the second item stays one literal argument.

        Options ``delay`` (seconds or a timedelta), ``at`` (a datetime, naive meaning local time,
        or epoch seconds) or ``cron`` (an expression) schedule it, through rq-scheduler: it is
        ``scheduled`` until due, then runs under the same id (a cron job's runs: ``<id>@<epoch s>``).
        """
        spec = Spec.for_command(command, cwd, env) if isinstance(command, str) else Spec.for_argv(command, cwd, env)
        return self.submit_spec(spec, *split_options(options))

    def enqueue(self, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Enqueue a call of ``func`` (a callable or ``package.module:function``) with default options."""
        return self.enqueue_call(func, args, kwargs)

    def enqueue_call(
        self,
        func: str | Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Enqueue a call with options (watchdog, queue, ...) kept apart from the function's kwargs.

        ``delay``, ``at`` and ``cron`` schedule it, as in :meth:`submit`.
        """
        return self.submit_spec(Spec.for_call(func, tuple(args), kwargs), *split_options(options))

    def submit_script(self, name: str, params: Mapping[str, str] | None = None, **options: Any) -> Job:
        """Run the named script with these parameter values; options (and scheduling) as in :meth:`submit`.

        The script is resolved now into the job's own spec, so editing or deleting it later changes
        nothing for this job. Raises NoSuchScript, or InvalidScript for an unknown or missing parameter.
        """
        spec, fields = self.named_scripts.get(name).snapshot(params or {})
        return self.submit_spec(spec, *split_options(options), fields=fields)

    def submit_spec(
        self, spec: Spec, options: Options, when: When | None = None, *, fields: Mapping[str, str] | None = None
    ) -> Job:
        """Submit one job; with ``when``, file it with rq-scheduler as ``scheduled`` instead.

        ``fields``: more record fields to keep with the job (a script job's ``script`` and ``params``).
        """
        if when is not None:
            options = self._rules.prepare(spec, options)
            job_id = options.id or new_id()
            schedule.file_job(self.redis, self.scripts, self.prefix, job_id, spec, options.validated(), when, fields)
            return Job(self, job_id)
        return self.submit_many([(spec, options)], fields=fields)[0]

    def submit_many(
        self, items: Iterable[tuple[Spec, Options]], *, fields: Mapping[str, str] | None = None
    ) -> list[Job]:
        """Submit many jobs in one pipelined round trip; returns their handles in order."""
        jobs: list[Job] = []
        pipe = self.redis.pipeline(transaction=False)
        extra = {"fields": dict(fields)} if fields else None
        for spec, given in items:
            options = self._rules.prepare(spec, given)
            job_id = options.id or new_id()
            self.scripts.submit(self.prefix, *submit_argv(job_id, spec, options, extra), client=pipe)
            jobs.append(Job(self, job_id))
        for job, reply in zip(jobs, self.scripts.execute(pipe), strict=True):
            check_submitted(job.id, reply)  # an unknown dependency: that one job was refused, the rest stand
        self.replicas.confirm(self.redis, self.keys, [job.id for job in jobs])
        return jobs

    # -- reading ------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

    def record(self, job_id: str) -> Record:
        raw: Any = self.redis.hgetall(self.keys.job(job_id))  # decoded replies: dict[str, str]
        if not raw:
            raise NoSuchJob(job_id)
        return Record.from_hash(job_id, raw)

    def wait(self, job_id: str, timeout: float | None = None) -> Record:
        """Block until the job is finished; wakes on the end marker of its output stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        record = self.record(job_id)
        if record.finished:
            return record
        last, record = self._announce_waiter(job_id)
        while not record.finished:
            block_ms = FOLLOW_BLOCK_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            if block_ms <= 0:
                raise WaitTimeout(f"job {job_id} still {record.status.value} after {timeout}s")
            entries = self._read_output(job_id, last, block_ms)
            if entries:
                last = entries[-1][0]
            if not entries or any("end" in fields for _id, fields in entries):
                record = self.record(job_id)
        return record

    def follow(self, job_id: str) -> Iterator[Chunk]:
        """Yield the job's output as it is produced, until the job finishes.

        A job already finished yields its recorded stdout and stderr tails.
        """
        record = self.record(job_id)
        if not record.finished:
            _marker, record = self._announce_waiter(job_id)
        if record.finished:
            yield from _record_chunks(record)
            return
        last = "0"
        while True:
            entries = self._read_output(job_id, last, FOLLOW_BLOCK_MS)
            for entry_id, fields in entries:
                last = entry_id
                if "end" in fields:
                    return
                if "fd" in fields:
                    yield Chunk(int(fields["fd"]), fields.get("data", ""))
            if not entries and self.record(job_id).finished:
                return

    def output(self, job_id: str) -> Output:
        """The job's output: the recorded tails once finished, the live chunks so far before."""
        record = self.record(job_id)
        if record.finished:
            return Output(record.stdout, record.stderr)
        parts: dict[int, list[str]] = {1: [], 2: []}
        entries: Any = self.redis.xrange(self.keys.output(job_id))
        for _entry_id, fields in entries:
            if "fd" in fields:
                parts.setdefault(int(fields["fd"]), []).append(fields.get("data", ""))
        return Output("".join(parts[1]), "".join(parts[2]))

    def _announce_waiter(self, job_id: str) -> tuple[str, Record]:
        """Make sure the job's output stream exists, so whatever finishes the job writes its end marker.

        Returns the marker's stream id and the record as it stood after the marker was written. A
        read-only user (``dashboard`` in conf/acl) cannot write the marker: it gets ``0-0``, reads
        the output from its start, and its loops look at the record once per FOLLOW_BLOCK_MS.
        """
        out, key = self.keys.output(job_id), self.keys.job(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(out, {"waiter": "1"})
        pipe.hgetall(key)
        pipe.ttl(key)
        marker, raw, ttl_s = pipe.execute(raise_on_error=False)
        wrote = not isinstance(marker, redis.exceptions.NoPermissionError)
        for reply in (marker, raw, ttl_s) if wrote else (raw, ttl_s):
            if isinstance(reply, Exception):
                raise reply
        if not raw:
            if wrote:
                self.redis.delete(out)
            raise NoSuchJob(job_id)
        record = Record.from_hash(job_id, raw)
        if wrote and record.finished and ttl_s > 0:  # it finished just before the marker: let the stream expire with it
            self.redis.expire(out, ttl_s)
        return str(marker) if wrote else "0-0", record

    def _read_output(self, job_id: str, after: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply: Any = self.redis.xread({self.keys.output(job_id): after}, block=max(1, block_ms), count=1000)
        return list(reply[0][1]) if reply else []

    # -- acting on jobs -----------------------------------------------------------------------

    def cancel(self, job_id: str) -> str:
        """Cancel a job; returns 'cancelled', 'cancelling' (a running job being killed) or its final status."""
        outcome = str(self.scripts.cancel(self.prefix, job_id))
        if outcome == "missing":
            raise NoSuchJob(job_id)
        return outcome

    def restart(self, job_id: str) -> Job:
        """Run a finished job again under the same id."""
        self._finished_only(job_id, "restart", self.scripts.restart(self.prefix, job_id))
        return Job(self, job_id)

    def delete(self, job_id: str) -> None:
        """Delete a finished job's record and output."""
        self._finished_only(job_id, "delete", self.scripts.delete(self.prefix, job_id))

    @staticmethod
    def _finished_only(job_id: str, verb: str, outcome: str) -> None:
        if outcome == "missing":
            raise NoSuchJob(job_id)
        if outcome in {s.value for s in Status if s not in TERMINAL}:
            raise JobStateError(f"cannot {verb} job {job_id}: it is {outcome}; cancel it first")

    # -- cluster ------------------------------------------------------------------------------

    def settings(self) -> Settings:
        raw: Any = self.redis.hgetall(self.keys.config)
        return Settings.from_hash(raw)

    def queue_defaults(self, queue: str) -> QueueDefaults:
        """A queue's retry defaults (``<p>:queue:<name>``), which jobs without their own get at submit."""
        raw: Any = self.redis.hgetall(self.keys.queue(queue))
        return QueueDefaults.from_hash(raw)

    def set_queue_defaults(
        self, queue: str, *, retries: int = 0, backoff: float = 0.0, backoff_max: float = 300.0
    ) -> QueueDefaults:
        """Set a queue's retry defaults; clients apply them within ``defaults.REFRESH_S`` seconds."""
        make_options(queue=queue)  # the queue name's check
        defaults = QueueDefaults(retries, backoff, backoff_max).validated()
        self.redis.hset(self.keys.queue(queue), mapping=defaults.to_hash())  # type: ignore[arg-type]
        return defaults

    def set_setting(self, name: str, value: str, policy_check: Callable[[str], object] | None = None) -> Settings:
        """Validate and store one live setting; the balancer and workers pick it up within a second."""
        updated = self.settings().with_value(name, value).validate(policy_check)
        self.redis.hset(self.keys.config, name, str(getattr(updated, name)))
        return updated

    def drain(self, worker: str, drain: bool = True) -> bool:
        """Tell a worker to take no new jobs (``drain=False``: to take them again); False if it is not registered.

        The worker finishes what it holds and shows state ``draining``, which the balancer skips.
        """
        if self.redis.zscore(self.keys.workers, worker) is None:
            return False
        self.redis.xadd(self.keys.worker_ctl(worker), {"op": "drain" if drain else "resume"}, maxlen=1000)
        return True


def make_options(
    *,
    watchdog: float | None = None,
    realtime: bool = False,
    queue: str = "default",
    retries: int | None = None,
    id: str | None = None,  # noqa: A002 - the option is called id everywhere (CLI, API, record)
    priority: int = 0,
    depends_on: str | Job | Iterable[str | Job] = (),
    after_any: bool = False,
    backoff: float | None = None,
    backoff_max: float = 300.0,
) -> Options:
    """Options from keyword arguments. ``depends_on``: job ids (or ``Job`` handles) to run after,
    once all have succeeded; with ``after_any``, once all have finished however they ended.
    ``backoff``: seconds before the first retry, doubling for each next one up to ``backoff_max``,
    with jitter (a retry waits between half and all of that). ``retries`` not given (None): the
    queue's default (``jb retries QUEUE``), else 0; an explicit 0 means none, whatever the queue says.
    ``backoff`` not given (None) takes the queue's backoff and backoff_max the same way."""
    deps = [depends_on] if isinstance(depends_on, str | Job) else list(depends_on)
    return Options(
        watchdog_s=watchdog,
        realtime=realtime,
        queue=queue,
        retries=retries,
        priority=priority,
        id=id,
        depends_on=tuple(dep.id if isinstance(dep, Job) else dep for dep in deps),
        after_any=after_any,
        backoff_s=backoff,
        backoff_max_s=backoff_max,
    )


def split_options(options: Mapping[str, Any]) -> tuple[Options, When | None]:
    """``submit``'s keyword options: the job's :class:`Options`, and when to run it if scheduled."""
    rest = dict(options)
    when = make_when(rest.pop("delay", None), rest.pop("at", None), rest.pop("cron", None))
    return make_options(**rest), when


def _record_chunks(record: Record) -> Iterator[Chunk]:
    if record.stdout:
        yield Chunk(1, record.stdout)
    if record.stderr:
        yield Chunk(2, record.stderr)


_default_client: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client module-level ``submit``/``enqueue`` use, configured from the environment."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            _default_client = Client()
        return _default_client


def submit(command: str, **options: Any) -> Job:
    """Submit a shell command with the default client; see :meth:`Client.submit`."""
    return default_client().submit(command, **options)


def enqueue(func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
    """Enqueue a call with the default client; see :meth:`Client.enqueue`."""
    return default_client().enqueue(func, *args, **kwargs)
