"""rq-scheduler's loop, as ``jb scheduler`` and ``jb balancer --scheduler`` run it.

Each pass is rq-scheduler's own: take its lock (``rq:scheduler_lock``, so any number of these
and of rq-scheduler's ``rqscheduler`` share the work), hand every due entry to its queue class,
re-file intervals and cron entries, let the lock go. Three things differ from rq-scheduler's
``run()``: what is due is decided by Redis's clock, not this host's; an entry jobbalancer cannot
carry (arguments JSON cannot encode, say) is taken off the schedule and dead-lettered instead of
ending the loop; and the loop stops on an Event and can be gated by another (the balancer's
``leading``), so it runs in a thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from rq.job import Job as RqJob
from rq_scheduler import Scheduler

from jobbalancer.compat.rq import Queue
from jobbalancer.config import key_prefix
from jobbalancer.connection import connect
from jobbalancer.errors import InvalidJob
from jobbalancer.keys import Keys
from jobbalancer.schedule.store import redis_now

log = logging.getLogger("jobbalancer.scheduler")

CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class JobBalancerScheduler(Scheduler):  # type: ignore[misc]  # rq-scheduler ships no type information
    """rq-scheduler's Scheduler, deciding by Redis's clock and handing jobbalancer queues their prefix."""

    def __init__(self, connection: redis.Redis, prefix: str, interval_s: float, name: str | None = None) -> None:
        super().__init__(connection=connection, interval=interval_s, name=name)
        self.keys = Keys(prefix)

    def get_jobs_to_queue(self, with_times: bool = False) -> Any:
        return self.get_jobs(redis_now(self.connection), with_times=with_times)

    def get_queue_for_job(self, job: RqJob) -> Any:
        queue = super().get_queue_for_job(job)
        if isinstance(queue, Queue) and queue.prefix is None:
            queue.prefix = self.keys.prefix  # an rq-scheduler user's job runs in this loop's cluster
        return queue

    def enqueue_job(self, job: RqJob) -> None:
        try:
            super().enqueue_job(job)
        except InvalidJob as exc:
            log.error("scheduled job %s cannot run on jobbalancer; taken off the schedule: %s", job.id, exc)
            self.cancel(job)
            self.connection.delete(job.key)
            at: Any = self.connection.time()
            self.connection.xadd(
                self.keys.dead,
                {"id": job.id, "reason": f"scheduled job refused: {exc}", "raw": "", "at": f"{at[0]}.{at[1]:06d}"},
                maxlen=100_000,
                approximate=True,
            )


class SchedulerLoop:
    """Runs rq-scheduler passes every ``interval_s`` until stopped.

    Args:
        url: the Redis URL.
        prefix: the jobbalancer key prefix jobs filed by rq-scheduler users run under.
        interval_s: seconds between passes (rq-scheduler's ``interval``); a job runs at most about
            this long after it is due.
        name: the scheduler's name in ``rq:scheduler_instance:<name>``; default a random one.
    """

    def __init__(
        self, url: str, prefix: str | None = None, *, interval_s: float = 1.0, name: str | None = None
    ) -> None:
        self.connection = connect(url, check=False, decode=False)  # bytes: rq needs them
        self.scheduler = JobBalancerScheduler(self.connection, key_prefix(prefix), interval_s, name)
        self.interval_s = interval_s
        self.passes = 0
        """Passes in which this loop held the lock and handed over what was due."""

    def run(self, stop: threading.Event, gate: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set; with ``gate``, hand jobs over only while it is set.

        A Redis outage is logged once and waited out.
        """
        born, outage = False, False
        try:
            while not stop.is_set():
                try:
                    if not born:
                        self.scheduler.register_birth()
                        born = True
                    self.scheduler.heartbeat()
                    if gate is None or gate.is_set():
                        self.step()
                    if outage:
                        log.warning("scheduler: Redis answers again")
                        outage = False
                except CONNECTION_ERRORS as exc:
                    if not outage:
                        log.warning("scheduler: Redis is unavailable (%s); retrying", exc)
                        outage = True
                stop.wait(self.interval_s)
        finally:
            self._close(born)

    def step(self) -> bool:
        """One pass: returns whether this loop held the lock (another scheduler may hold it)."""
        if not self.scheduler.acquire_lock():
            return False
        try:
            self.scheduler.enqueue_jobs()
        finally:
            self.scheduler.remove_lock()
        self.passes += 1
        return True

    def _close(self, born: bool) -> None:
        try:
            self.scheduler.remove_lock()
            if born:
                self.scheduler.register_death()
        except CONNECTION_ERRORS as exc:
            log.warning("scheduler: could not unregister (it expires by itself): %s", exc)
        self.connection.close()
