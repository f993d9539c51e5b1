"""rq's ``Queue`` and ``Job``, running on jobbalancer: change the import, keep the code.

``from jobbalancer.compat.rq import Queue`` instead of ``from rq import Queue``: ``enqueue``,
``enqueue_call``, ``enqueue_at``, ``enqueue_in`` and ``enqueue_job`` hand the job to jobbalancer (a
call of the function by its import path, with JSON arguments) and return a :class:`Job` that
answers ``get_status()``, ``return_value()``, ``result``, ``is_finished``, ... from jobbalancer's
record. It is also the queue class rq-scheduler hands due jobs to
(``Scheduler(queue_class="jobbalancer.compat.rq.Queue", connection=...)``).

What maps: ``job_timeout`` (default: the queue's, 180 s as in rq; -1 none) -> watchdog,
``job_id`` -> id, ``retry=Retry(max=N, interval=...)`` -> retries N with a backoff (the first
interval its base, the largest its cap),
``meta`` and ``result_ttl`` (-1 keeps it) -> the record, ``depends_on`` (ids, jobs or a
``Dependency``; ``allow_failure`` -> after any) -> dependencies, ``at_front`` -> top priority.
Refused with a clear error: bound methods and callable objects, callbacks, arguments or meta
that JSON cannot carry. Ignored: ``ttl``, ``failure_ttl``, ``description``, ``pipeline``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

import redis
from redis.client import Pipeline
from rq import Queue as RqQueue
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus
from rq.queue import EnqueueData

from jobbalancer.client import Client
from jobbalancer.client import Job as Handle
from jobbalancer.compat.args import check_json_args, check_json_value
from jobbalancer.config import key_prefix
from jobbalancer.defaults import SubmitRules
from jobbalancer.errors import InvalidJob, NoSuchJob
from jobbalancer.job import PRIORITY_LIMIT, Kind, Options, Record, Spec, Status, check_submitted, submit_argv
from jobbalancer.schedule.store import file_job, hand_over, is_repeating, run_id, schedule_score, settle_entry, twin
from jobbalancer.schedule.when import When, aware

STATUS = {
    Status.SCHEDULED: JobStatus.SCHEDULED,
    Status.QUEUED: JobStatus.QUEUED,
    Status.ASSIGNED: JobStatus.QUEUED,
    Status.RUNNING: JobStatus.STARTED,
    Status.SUCCEEDED: JobStatus.FINISHED,
    Status.FAILED: JobStatus.FAILED,
    Status.TIMED_OUT: JobStatus.FAILED,
    Status.CANCELLED: JobStatus.CANCELED,
    Status.REJECTED: JobStatus.FAILED,
}
CALLBACKS = ("_success_callback_name", "_failure_callback_name", "_stopped_callback_name")

_clients: WeakKeyDictionary[redis.ConnectionPool, dict[str, Client]] = WeakKeyDictionary()
_rules: WeakKeyDictionary[Client, SubmitRules] = WeakKeyDictionary()


def client_for(connection: redis.Redis, prefix: str | None = None) -> Client:
    """A jobbalancer client on rq's connection's server (prefix: ``JB_PREFIX``, then ``jb``)."""
    chosen = key_prefix(prefix)
    made = _clients.setdefault(connection.connection_pool, {})
    if chosen not in made:
        made[chosen] = Client(prefix=chosen, connection=twin(connection, decode=True))
    return made[chosen]


def rules_for(client: Client) -> SubmitRules:
    """The submit rules a Client applies (cached per client), for jobs submitted here directly."""
    if client not in _rules:
        _rules[client] = SubmitRules(client.redis, client.keys)
    return _rules[client]


def func_path(name: str | None) -> str:
    """jobbalancer's ``module:function`` for rq's ``module.function``."""
    if not name:
        raise InvalidJob("the rq job has no function")
    if ":" in name:
        return name
    module, _, attr = name.rpartition(".")
    if not module:
        raise InvalidJob(f"function {name!r} must be a module-level function, like 'package.module.function'")
    return f"{module}:{attr}"


def convert(
    job: RqJob, queue: str, default_timeout: float | None, at_front: bool
) -> tuple[Spec, Options, dict[str, str]]:
    """The jobbalancer spec, options and extra record fields for an rq job.

    Raises:
        InvalidJob: what rq could run but jobbalancer cannot carry, named.
    """
    if job.instance is not None:
        raise InvalidJob(
            f"job {job.id}: {job.func_name} is a method or a callable object; jobbalancer runs module-level "
            "functions by import path (it never pickles an instance)"
        )
    if any(getattr(job, name, None) for name in CALLBACKS):
        raise InvalidJob(f"job {job.id}: on_success/on_failure/on_stopped callbacks are not supported by jobbalancer")
    path = func_path(job.func_name)
    args, kwargs = tuple(job.args), dict(job.kwargs)
    check_json_args(path, args, kwargs)
    timeout = job.timeout if job.timeout is not None else default_timeout
    intervals = [float(i) for i in job.retry_intervals or [] if i and i > 0]
    options = Options(
        watchdog_s=None if timeout is None or timeout < 0 else float(timeout),
        queue=queue,
        retries=job.retries_left or 0,
        priority=PRIORITY_LIMIT if at_front else 0,
        id=job.id,
        depends_on=tuple(job._dependency_ids),
        after_any=bool(job.allow_dependency_failures) and bool(job._dependency_ids),
        # rq waits its intervals between retries; jobbalancer's backoff doubles from a base up to a cap
        backoff_s=intervals[0] if intervals else None,
        backoff_max_s=max(intervals) if intervals else 300.0,
    ).validated()
    fields: dict[str, str] = {}
    meta = stored_meta(job.meta)
    if meta:
        fields["meta"] = check_json_value(f"meta of job {job.id}", meta)
    if job.result_ttl is not None:
        fields["result_ttl"] = str(-1 if job.result_ttl < 0 else max(1, int(job.result_ttl)))
    return Spec.for_call(path, args, kwargs), options, fields


def stored_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The user's meta, without the ``jb_`` keys jobbalancer's scheduling adds."""
    return {name: value for name, value in meta.items() if not name.startswith("jb_")}


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class Job(RqJob):
    """rq's Job answering from jobbalancer's record; ``.jb`` is the jobbalancer handle.

    Statuses map as: scheduled -> scheduled, queued/assigned -> queued (``deferred`` while it
    waits for dependencies), running -> started, succeeded -> finished, failed/timed_out/rejected
    -> failed, cancelled -> canceled.
    """

    jb: Handle

    @classmethod
    def bound(cls, connection: redis.Redis, handle: Handle, source: RqJob | None = None) -> Job:
        """A Job for jobbalancer job ``handle``, carrying ``source``'s function, arguments and meta."""
        job = cls(connection=connection)
        job._id = handle.id  # not through the setter: jobbalancer ids may hold characters rq refuses
        job.jb = handle
        if source is not None:
            job.func_name, job.instance, job.args, job.kwargs = source.func_name, None, source.args, source.kwargs
            job.meta = stored_meta(source.meta)
            job.origin, job.description, job.timeout = source.origin, source.description, source.timeout
            job.result_ttl = source.result_ttl
        return job

    @classmethod
    def fetch(
        cls, id: str, connection: redis.Redis | None = None, serializer: Any = None, prefix: str | None = None
    ) -> Job:  # noqa: A002
        """The job with that id from jobbalancer (prefix: ``JB_PREFIX``, then ``jb``).

        Raises:
            NoSuchJobError: no record with that id (as rq raises).
        """
        if connection is None:
            raise TypeError("Job.fetch() needs connection=")
        job = cls.bound(connection, client_for(connection, prefix).job(id))
        job.refresh()
        return job

    def _record(self) -> Record:
        try:
            return self.jb.record()
        except NoSuchJob:
            raise NoSuchJobError(f"No such job: {self.id}") from None

    def refresh(self) -> None:
        """Re-read the record: status, meta, function, arguments and times."""
        record = self._record()
        self._status = self._map(record)
        spec = record.spec
        if record.kind == Kind.CALL:
            self.func_name = str(spec.get("func", "")).replace(":", ".")
            self.instance, self.args, self.kwargs = None, spec.get("args", []), spec.get("kwargs", {})
        else:
            self.func_name, self.instance, self.args, self.kwargs = None, None, (), {}
        self.origin, self.timeout = record.queue, record.watchdog
        self.meta = self._stored_meta()
        self.enqueued_at, self.started_at, self.ended_at = (
            _when(record.created_at),
            _when(record.started_at),
            _when(record.finished_at),
        )

    def _stored_meta(self) -> dict[str, Any]:
        text: Any = self.jb.client.redis.hget(self.jb.client.keys.job(self.id), "meta")
        return dict(json.loads(text)) if text else {}

    def _map(self, record: Record) -> JobStatus:
        if record.status is Status.QUEUED and record.depends_on:
            waiting: Any = self.jb.client.redis.scard(self.jb.client.keys.deps(self.id))
            if waiting:
                return JobStatus.DEFERRED
        return STATUS[record.status]

    def get_status(self, refresh: bool = True) -> JobStatus:
        if refresh or self._status is JobStatus.CREATED:
            try:
                self._status = self._map(self._record())
            except NoSuchJobError:
                raise InvalidJobOperation(f"Failed to retrieve status for job: {self.id}") from None
        return self._status

    def get_meta(self, refresh: bool = True) -> dict[str, Any]:
        if refresh:
            self.meta = self._stored_meta()
        return self.meta

    def return_value(self, refresh: bool = False) -> Any:
        """The function's return value (a command's stdout) once it succeeded; None before or otherwise."""
        try:
            record = self.jb.record()
        except NoSuchJob:
            return None
        if record.status is not Status.SUCCEEDED:
            return None
        return record.result if record.kind == Kind.CALL else record.stdout

    @property
    def result(self) -> Any:
        return self.return_value()

    @property
    def exc_info(self) -> str | None:
        """The error of a job that did not succeed (a traceback for a call that raised)."""
        try:
            return self.jb.record().error
        except NoSuchJob:
            return None

    def save_meta(self) -> None:
        """Store ``meta`` (JSON) in the record, if the record still exists."""
        text = check_json_value(f"meta of job {self.id}", self.meta)
        client = self.jb.client
        if client.redis.exists(client.keys.job(self.id)):
            client.redis.hset(client.keys.job(self.id), "meta", text)

    def save(self, pipeline: Pipeline | None = None, include_meta: bool = True, include_result: bool = True) -> None:
        """Only ``meta`` can change once a job is handed over: this stores it."""
        if include_meta:
            self.save_meta()

    def cancel(
        self, pipeline: Pipeline | None = None, enqueue_dependents: bool = False, remove_from_dependencies: bool = False
    ) -> dict[str, list[str]]:
        """Cancel the job in jobbalancer (a running one is killed); its dependents are cancelled too.

        Returns:
            An empty mapping: jobbalancer never enqueues dependents of a cancelled job.
        """
        self.jb.cancel()
        return {}

    def delete(
        self, pipeline: Pipeline | None = None, remove_from_queue: bool = True, delete_dependents: bool = False
    ) -> None:
        """Delete the finished job's record (refused while it is not finished, as ``jb delete``)."""
        try:
            self.jb.client.delete(self.id)
        except NoSuchJob:
            return


class Queue(RqQueue):
    """An rq Queue whose jobs run on jobbalancer workers, in the jobbalancer queue of the same name.

    Args (besides rq's):
        prefix: the jobbalancer key prefix; defaults to ``JB_PREFIX``, then ``jb`` (``jb scheduler``
            sets its own for the jobs it hands over).
    """

    job_class = Job

    def __init__(
        self,
        name: str = "default",
        connection: redis.Redis | None = None,
        *args: Any,
        prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, connection, *args, **kwargs)
        self.prefix = prefix

    @property
    def client(self) -> Client:
        return client_for(self.connection, self.prefix)

    def _convert(self, job: RqJob, at_front: bool) -> tuple[Spec, Options, dict[str, str]]:
        """:func:`convert`, then the cluster's rules (spec size limit, the queue's retry defaults)."""
        spec, options, fields = convert(job, self.name, self._default_timeout, at_front or bool(job.enqueue_at_front))
        return spec, rules_for(self.client).prepare(spec, options), fields

    def enqueue_job(
        self, job: RqJob, pipeline: Pipeline | None = None, at_front: bool = False, unique: bool = False
    ) -> Job:
        """Hand one rq job to jobbalancer; what ``enqueue``, ``enqueue_call`` and rq-scheduler call."""
        client = self.client
        if "jb_id" in job.meta:  # filed by jobbalancer's own scheduling, now due
            return Job.bound(self.connection, client.job(hand_over(client.redis, client.scripts, job)))
        spec, options, fields = self._convert(job, at_front)
        scheduled = schedule_score(job) is not None  # an entry of rq-scheduler's, due now
        job_id = run_id(job.id, job, client.redis) if scheduled and is_repeating(job) else job.id
        argv = submit_argv(job_id, spec, options, {"fields": fields} if fields else None)
        created = check_submitted(job_id, client.scripts.submit(client.prefix, *argv)[0])
        if scheduled:
            settle_entry(job)
        if unique and not created:
            raise DuplicateJobError(f"Job with ID '{job_id}' already exists")
        return Job.bound(self.connection, client.job(job_id), job)

    def enqueue_many(
        self, job_datas: Iterable[EnqueueData], pipeline: Pipeline | None = None, group_id: str | None = None
    ) -> list[RqJob]:
        """Hand many jobs (from ``Queue.prepare_data``) to jobbalancer, one after another, in order.

        A job's dependencies must come before it in the list (or exist already).
        """
        accepted = set(inspect.signature(self.create_job).parameters)
        jobs: list[RqJob] = []
        for data in job_datas:
            fields = {name: value for name, value in data._asdict().items() if name in accepted}
            jobs.append(self.enqueue_job(self.create_job(**fields), at_front=bool(data.at_front)))
        return jobs

    def schedule_job(
        self, job: RqJob, datetime: datetime, pipeline: Pipeline | None = None, unique: bool = False
    ) -> Job:
        """``enqueue_at``/``enqueue_in``: file the job with rq-scheduler as a ``scheduled`` jobbalancer job.

        A naive ``datetime`` is local time, as in rq.
        """
        client = self.client
        spec, options, fields = self._convert(job, False)
        filed = file_job(
            client.redis, client.scripts, client.prefix, job.id, spec, options, When(at=aware(datetime)), fields
        )
        if unique and not filed:
            raise DuplicateJobError(f"Job with ID '{job.id}' already exists")
        return Job.bound(self.connection, client.job(job.id), job)

    def fetch_job(self, job_id: str) -> Job | None:
        try:
            return Job.fetch(job_id, connection=self.connection, prefix=self.client.prefix)
        except NoSuchJobError:
            return None
