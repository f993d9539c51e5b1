"""Exceptions a user of jobbalancer can catch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobbalancer.job import Record


class JobBalancerError(Exception):
    """Base of every error jobbalancer raises on purpose."""


class InvalidJob(JobBalancerError, ValueError):
    """A job spec or option that cannot be accepted; the message names what is wrong."""


class InvalidSetting(JobBalancerError, ValueError):
    """A setting with an unknown name or a value out of range."""


class CorruptRecord(JobBalancerError):
    """A job record in Redis that cannot be read (a status jobbalancer does not know)."""


class RedisUnavailable(JobBalancerError):
    """Redis did not answer at the configured URL.

    Attributes:
        job_ids: for a submit that gave up, the ids of its jobs: each may or may not be stored.
            Submitting them again under the same ids is safe (an existing id is left as it is).
    """

    def __init__(self, message: str, job_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.job_ids = job_ids or []


class NotReplicated(JobBalancerError):
    """A submit with ``wait_replicas`` that fewer replicas confirmed in time: a failover may lose the jobs.

    Attributes:
        job_ids: the jobs of that submit. If ``present``, they are on the primary and will run
            unless it fails before a replica has them; else a failover has already lost some.
        acked: replicas that confirmed; ``wanted``: replicas asked for; ``timeout_s``: the wait.
    """

    def __init__(self, job_ids: list[str], acked: int, wanted: int, timeout_s: float, present: bool) -> None:
        self.job_ids, self.acked, self.wanted, self.timeout_s, self.present = job_ids, acked, wanted, timeout_s, present
        jobs = f"job {job_ids[0]}" if len(job_ids) == 1 else f"{len(job_ids)} jobs ({job_ids[0]}, ...)"
        if present:
            why = f"only {acked} of {wanted} replicas confirmed within {timeout_s:g}s; a failover now would lose it"
        else:
            why = "not on the current primary: lost in a failover; submit again"
        super().__init__(f"{jobs} not safely replicated: {why}")


class NoSuchJob(JobBalancerError, KeyError):
    """No job record with that id (never created, deleted, or expired)."""

    def __str__(self) -> str:
        return f"no job with id {self.args[0]!r}"


class JobStateError(JobBalancerError):
    """The job is in a state that does not allow the operation (e.g. delete while running)."""


class JobOutcome(JobBalancerError):
    """A job ended without success; ``record`` holds its final record."""

    def __init__(self, record: Record) -> None:
        self.record = record
        detail = f": {record.error}" if record.error else ""
        super().__init__(f"job {record.id} {record.status.value}{detail}")


class JobFailed(JobOutcome):
    """The job failed (non-zero exit, an exception, or lost past the poison limit)."""


class JobTimedOut(JobOutcome):
    """The job's watchdog killed it."""


class JobCancelled(JobOutcome):
    """The job was cancelled."""


class JobRejected(JobOutcome):
    """A realtime job found no free slot."""


class WaitTimeout(JobBalancerError, TimeoutError):
    """The job did not finish within the time a caller was prepared to wait."""
