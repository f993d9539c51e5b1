"""The producer side: submit and enqueue jobs, follow them, and read their outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from jobbalancer import schedule  # its rq-scheduler part loads when a job is first scheduled
from jobbalancer.config import Settings, key_prefix, redis_url
from jobbalancer.connection import connect, describe
from jobbalancer.defaults import QueueDefaults, SubmitRules
from jobbalancer.durability import WaitReplicas
from jobbalancer.errors import (
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStateError,
    JobTimedOut,
    NoSuchJob,
    RedisUnavailable,
)
from jobbalancer.job import (
    TERMINAL,
    Kind,
    Options,
    Record,
    Spec,
    Status,
    check_submitted,
    new_id,
    options_argv,
    submit_batches,
)
from jobbalancer.keys import Keys
from jobbalancer.options import make_options, split_options
from jobbalancer.schedule.when import When
from jobbalancer.scripts import Scripts
from jobbalancer.scripts_store import ScriptStore
from jobbalancer.views import Views
from jobbalancer.watch import Chunk as Chunk
from jobbalancer.watch import Output as Output
from jobbalancer.watch import Watching

Prepared = tuple[str | None, list[str]]  # a job's own id if it has one, and submit.lua's ARGV after the spec
OUTCOME_ERRORS = {
    Status.FAILED: JobFailed,
    Status.TIMED_OUT: JobTimedOut,
    Status.CANCELLED: JobCancelled,
    Status.REJECTED: JobRejected,
}


_T = TypeVar("_T")
SUBMIT_RETRY_S = 5.0
"""How long a submit keeps trying while Redis is away before it raises RedisUnavailable."""


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


class Client(Watching, Views):
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
        """Submit a shell command (run with ``/bin/sh -c``); options as in :func:`~jobbalancer.options.make_options`.

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
        """Submit many jobs in one round trip (``submit.lua`` calls of up to 100 jobs each, pipelined);
        returns their handles in order.

        While Redis is unreachable (a restart, a Sentinel failover) the submit is tried again for
        up to ``SUBMIT_RETRY_S`` seconds.

        Raises:
            RedisUnavailable: Redis stayed away; its ``job_ids`` are the jobs that may be stored.
        """
        wanted = list(items)
        extra = {"fields": dict(fields)} if fields else None
        deadline = time.monotonic() + SUBMIT_RETRY_S
        calls = self._retrying(deadline, len(wanted), [], lambda: self._submit_calls(wanted, extra))
        ids = [str(call[0]) for call in calls]
        replies = self._retrying(deadline, len(calls), ids, lambda: self._send_submits(calls))
        jobs = [Job(self, job_id) for job_id in ids]
        for job, reply in zip(jobs, replies, strict=True):
            check_submitted(job.id, reply)  # an unknown dependency: that one job was refused, the rest stand
        self.replicas.confirm(self.redis, self.keys, ids)
        return jobs

    def _submit_calls(
        self, items: list[tuple[Spec, Options]], extra: Mapping[str, Any] | None
    ) -> list[tuple[Any, ...]]:
        """``submit.lua``'s ARGV after the prefix for each job (reads the cached submit rules)."""
        calls: list[tuple[Any, ...]] = []
        prepared: dict[tuple[Any, ...], Prepared] = {}
        for spec, given in items:
            encoded = spec.encode()
            self._rules.check_spec(encoded)
            job_id, tail = self._prepared(given, extra, prepared)
            calls.append((job_id or new_id(), spec.kind.value, encoded, *tail))
        return calls

    def _send_submits(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """The jobs in as few ``submit.lua`` calls as ``submit_batches`` allows, all in one round
        trip; one reply per job."""
        batches = self.scripts.many([("submit", (self.prefix, *argv)) for argv in submit_batches(calls)])
        return [reply for replies in batches for reply in replies]

    def _retrying(self, deadline: float, count: int, ids: list[str], step: Callable[[], _T]) -> _T:
        """``step()``, again after a lost connection until ``deadline`` (a restart, a Sentinel
        failover): safe, as a submit under an id that exists changes nothing. Past it,
        RedisUnavailable, naming the ids of jobs that may have been stored (``ids``)."""
        pause = 0.1
        while True:
            try:
                return step()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if isinstance(exc, redis.AuthenticationError) or time.monotonic() + pause > deadline:
                    fate = (
                        "each may or may not be stored: submitting again under the same ids is safe"
                        if ids
                        else "none was stored"
                    )
                    where = describe(self.redis)
                    raise RedisUnavailable(
                        f"cannot reach Redis at {where} to submit {count} job(s) ({exc}); {fate}", ids
                    ) from None
                time.sleep(pause)  # a back-off between attempts: Redis is away, there is no event to wait on
                pause = min(pause * 2, 1.0)

    def _prepared(
        self, given: Options, extra: Mapping[str, Any] | None, cache: dict[tuple[Any, ...], Prepared]
    ) -> Prepared:
        """The job's own id (if it has one) and ``submit.lua``'s ARGV after the spec, for these options.

        That ARGV depends on the options alone, so one batch builds it once per distinct options.
        Equal options are the same options, but for numbers of another type (``retries=1.0``
        equals ``1``, and fails validation): the types of those are part of the key.
        """
        key = (given, type(given.retries), type(given.priority), type(given.backoff_s), type(given.backoff_max_s))
        try:
            found = cache.get(key)
        except TypeError:  # something unhashable, such as depends_on given as a list: build it each time
            options = self._rules.with_defaults(given).validated()
            return options.id, options_argv(options, extra)
        if found is None:
            options = self._rules.with_defaults(given).validated()
            found = cache[key] = (options.id, options_argv(options, extra))
        return found

    # -- reading ------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

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
