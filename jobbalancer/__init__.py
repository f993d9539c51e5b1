"""jobbalancer: a distributed job balancer on Redis Streams.

Submit shell commands or Python callables; a balancer places them on workers by live load;
watchdogs kill overruns; a dead worker's jobs run again elsewhere.
"""

from jobbalancer.client import Client, Job, Output, enqueue, submit
from jobbalancer.errors import (
    InvalidJob,
    JobBalancerError,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobTimedOut,
    NoSuchJob,
    WaitTimeout,
)
from jobbalancer.job import Status

__all__ = [
    "Client",
    "InvalidJob",
    "Job",
    "JobBalancerError",
    "JobCancelled",
    "JobFailed",
    "JobRejected",
    "JobTimedOut",
    "NoSuchJob",
    "Output",
    "Status",
    "WaitTimeout",
    "enqueue",
    "submit",
]
