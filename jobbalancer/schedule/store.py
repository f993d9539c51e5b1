"""Scheduled jobs, filed with rq-scheduler, and their hand-over to the inbox when due.

A scheduled job has a jobbalancer record from the start (status ``scheduled``, the same id all
the way to its run) and an entry in rq-scheduler's schedule: an rq job of the placeholder
function ``DUE_FUNC``, whose meta names the jobbalancer prefix and id and the queue class
``jobbalancer.compat.rq.Queue``. rq-scheduler's loop (``jb scheduler``, ``jb balancer
--scheduler``, or rq-scheduler's own ``rqscheduler``) hands it to that queue class when it is due,
and the queue class calls :func:`hand_over`, which runs ``due.lua``. Nothing of the job's own is
in rq-scheduler's (pickled) entry: spec and arguments stay in the JSON record.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job as RqJob
from rq_scheduler import Scheduler
from rq_scheduler.utils import get_next_scheduled_time, to_unix

from jobbalancer.errors import InvalidJob, JobStateError, NoSuchJob
from jobbalancer.job import Kind, Options, Record, Spec, Status, check_submitted, submit_argv
from jobbalancer.keys import Keys
from jobbalancer.schedule.when import When

QUEUE_CLASS = "jobbalancer.compat.rq.Queue"
DUE_FUNC = "jobbalancer.schedule.due"  # a name only: the queue class hands the job over, nothing calls it
RQ_ID = re.compile(r"[A-Za-z0-9_-]+")  # the ids rq accepts; others get an rq id of their own

# crontab (under rq-scheduler) warns on every next-time computation about a default it will change.
warnings.filterwarnings("ignore", message=r"Version 0\.22\.0\+ of crontab", category=FutureWarning)

_twins: WeakKeyDictionary[redis.ConnectionPool, dict[bool, redis.Redis]] = WeakKeyDictionary()


def twin(conn: redis.Redis, *, decode: bool) -> redis.Redis:
    """A client on the same server as ``conn`` that does (or does not) decode replies.

    rq and rq-scheduler need raw bytes; jobbalancer's client decodes. One twin per pool, kept as
    long as the original pool lives.
    """
    pool = conn.connection_pool
    if bool(pool.connection_kwargs.get("decode_responses")) == decode:
        return conn
    made = _twins.setdefault(pool, {})
    if decode not in made:
        kwargs = {**pool.connection_kwargs, "decode_responses": decode}
        made[decode] = redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )
    return made[decode]


def redis_now(conn: redis.Redis) -> float:
    """Epoch seconds by Redis's clock."""
    reply: Any = conn.time()
    return int(reply[0]) + int(reply[1]) / 1e6


def scheduler_for(conn: redis.Redis, queue: str = "default") -> Any:
    """rq-scheduler's Scheduler on ``conn``'s server, filing jobs for jobbalancer's queue class."""
    return Scheduler(queue_name=queue, connection=twin(conn, decode=False), queue_class=QUEUE_CLASS)


def file_job(
    conn: redis.Redis,
    scripts: Any,
    prefix: str,
    job_id: str,
    spec: Spec,
    options: Options,
    when: When,
    fields: Mapping[str, str] | None = None,
) -> bool:
    """Create the job's record as ``scheduled`` and file it with rq-scheduler.

    Returns:
        True when filed; False when a job with that id already existed (it is left as it is).

    Raises:
        InvalidJob: the options cannot be scheduled (a scheduled job cannot also have dependencies).
    """
    if options.depends_on:
        raise InvalidJob("a scheduled job cannot also wait for other jobs; schedule the first job of the chain")
    if when.cron is not None:
        due = float(to_unix(get_next_scheduled_time(when.cron)))
    elif when.at is not None:
        due = float(math.ceil(when.at.timestamp()))
    else:
        # rq-scheduler keeps whole seconds; rounding up means a job never runs before its time
        due = float(math.ceil(redis_now(conn) + (when.delay_s or 0.0)))
    scheduler = scheduler_for(conn, options.queue)
    rq_id = job_id if RQ_ID.fullmatch(job_id) else uuid.uuid4().hex
    record = {
        **(fields or {}),
        "sched_zset": scheduler.scheduled_jobs_key,
        "sched_id": rq_id,
        "sched_job": RqJob.key_for(rq_id),
        "schedule": when.describe(),
    }
    extra = {"due_at": f"{due:.0f}", "fields": record}
    if not check_submitted(job_id, scripts.submit(prefix, *submit_argv(job_id, spec, options, extra))[0]):
        return False
    meta = {"jb_prefix": prefix, "jb_id": job_id}
    try:
        if when.cron is not None:
            scheduler.cron(when.cron, DUE_FUNC, id=rq_id, queue_name=options.queue, meta=meta)
        else:
            moment = datetime.fromtimestamp(due, UTC)
            scheduler.enqueue_at(moment, DUE_FUNC, job_id=rq_id, queue_name=options.queue, meta=meta)
    except Exception:
        # nothing would ever make the record due: cancel it (if Redis lets us) rather than leave it scheduled
        with contextlib.suppress(redis.RedisError):
            scripts.cancel(prefix, job_id)
        raise
    return True


def is_repeating(rq_job: RqJob) -> bool:
    """Whether rq-scheduler runs this entry more than once (an interval or a cron expression)."""
    return bool(rq_job.meta.get("interval") or rq_job.meta.get("cron_string"))


def schedule_score(rq_job: RqJob) -> float | None:
    """When rq-scheduler has the entry due (epoch s), None if it is not in its schedule.

    While rq-scheduler hands an entry over, the entry is still there: it removes it afterwards.
    """
    score: Any = rq_job.connection.zscore(Scheduler.scheduled_jobs_key, rq_job.id)
    return None if score is None else float(score)


def due_epoch(rq_job: RqJob, conn: redis.Redis) -> int:
    """When rq-scheduler had the entry due, or now (Redis's clock) for a job not in its schedule."""
    score = schedule_score(rq_job)
    return int(score) if score is not None else int(redis_now(conn))


def run_id(job_id: str, rq_job: RqJob, conn: redis.Redis) -> str:
    """The id a run gets: the job's own for a one-off, ``<id>@<due epoch s>`` for a repeating one.

    Deterministic, so two schedulers handing the same run over create it once.
    """
    return f"{job_id}@{due_epoch(rq_job, conn)}" if is_repeating(rq_job) else job_id


def settle_entry(rq_job: RqJob) -> None:
    """After a hand-over: keep a repeating entry's meta (rq-scheduler counts repeats down in it) or
    delete the entry of a job that will not come again."""
    repeat = rq_job.meta.get("repeat")
    if is_repeating(rq_job) and repeat != 0:
        rq_job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    else:
        rq_job.connection.delete(rq_job.key)


def hand_over(conn: redis.Redis, scripts: Any, rq_job: RqJob) -> str:
    """A native scheduled job is due: put it (or, for a repeating one, its next run) in the inbox.

    Returns:
        The id the run has.
    """
    prefix, job_id = str(rq_job.meta["jb_prefix"]), str(rq_job.meta["jb_id"])
    run = run_id(job_id, rq_job, conn)
    last = is_repeating(rq_job) and rq_job.meta.get("repeat") == 0
    scripts.due(prefix, job_id, "" if run == job_id else run, "1" if last else "0")
    settle_entry(rq_job)
    return run


@dataclass(frozen=True)
class Entry:
    """One entry of rq-scheduler's schedule that runs on jobbalancer, as ``jb schedule list`` shows it."""

    id: str
    due_at: float
    schedule: str
    queue: str
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "due_at": self.due_at, "schedule": self.schedule, "queue": self.queue, "what": self.what}


def describe(record: Record) -> str:
    """A job's command, or its call written out."""
    spec = record.spec
    if record.kind == Kind.CALL:
        args = [json.dumps(a) for a in spec.get("args", [])]
        args += [f"{k}={json.dumps(v)}" for k, v in spec.get("kwargs", {}).items()]
        return f"{spec.get('func')}({', '.join(args)})"
    return str(spec.get("command", ""))


def describe_repeat(meta: Mapping[str, Any]) -> str:
    if meta.get("cron_string"):
        text = f"cron {meta['cron_string']}"
    elif meta.get("interval"):
        text = f"every {meta['interval']}s"
    else:
        return "once"
    return text if meta.get("repeat") is None else f"{text}, {meta['repeat']} more"


def entries(conn: redis.Redis, prefix: str) -> list[Entry]:
    """Entries of rq-scheduler's schedule bound for jobbalancer, soonest first.

    Native entries of other prefixes are left out; entries filed by rq-scheduler users with the
    ``jobbalancer.compat.rq.Queue`` queue class are shown (they run in whichever cluster the
    scheduler loop that hands them over belongs to).
    """
    raw = twin(conn, decode=False)
    keys = Keys(prefix)
    found = []
    scored: Any = raw.zrange(Scheduler.scheduled_jobs_key, 0, -1, withscores=True)
    for member, score in scored:
        try:
            rq_job = RqJob.fetch(member.decode(), connection=raw)
        except NoSuchJobError:
            continue
        meta = rq_job.meta
        if meta.get("queue_class_name") != QUEUE_CLASS or meta.get("jb_prefix", prefix) != prefix:
            continue
        if "jb_id" in meta:
            raw_record: Any = conn.hgetall(keys.job(meta["jb_id"]))
            what = describe(Record.from_hash(meta["jb_id"], raw_record)) if raw_record else "(no record)"
            found.append(Entry(meta["jb_id"], score, describe_repeat(meta), rq_job.origin, what))
        else:
            found.append(Entry(rq_job.id, score, describe_repeat(meta), rq_job.origin, rq_job.get_call_string() or ""))
    return found


def cancel(conn: redis.Redis, scripts: Any, prefix: str, job_id: str) -> str:
    """Take a job off the schedule: a native one is cancelled (its record says so), an entry filed
    by an rq-scheduler user is removed from rq-scheduler.

    Returns:
        ``'cancelled'`` or ``'removed'``.

    Raises:
        NoSuchJob: neither a job record nor a schedule entry has that id.
        JobStateError: the job is not scheduled (any more).
    """
    status: Any = conn.hget(Keys(prefix).job(job_id), "status")
    if status is not None and status != Status.SCHEDULED:
        raise JobStateError(f"job {job_id} is {status}, not scheduled; `jb cancel` cancels a job that is not")
    if status is not None:
        return str(scripts.cancel(prefix, job_id))
    raw = twin(conn, decode=False)
    if raw.zscore(Scheduler.scheduled_jobs_key, job_id) is None:
        raise NoSuchJob(job_id)
    raw.zrem(Scheduler.scheduled_jobs_key, job_id)
    raw.delete(RqJob.key_for(job_id))
    return "removed"
