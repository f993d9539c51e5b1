"""Clusters with rq-scheduler's loop, and a clean rq-scheduler schedule for every test.

rq-scheduler's keys (``rq:scheduler:scheduled_jobs``, ``rq:scheduler_lock``, ``rq:job:<id>``)
have no prefix, so each test starts and ends with them cleared on the suite's own server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from rq_scheduler import Scheduler

from jobbalancer.errors import NoSuchJob
from jobbalancer.job import Status
from tests.e2e.conftest import Cluster, cluster  # noqa: F401 - the e2e fixture, used here too
from tests.helpers import wait_for

SCHEDULER_INTERVAL_S = "0.2"


def clear_rq_scheduler(raw: redis.Redis) -> None:
    ids = [member.decode() for member in raw.zrange(Scheduler.scheduled_jobs_key, 0, -1)]
    instances = raw.keys(f"{Scheduler.redis_scheduler_namespace_prefix}*")
    raw.delete(Scheduler.scheduled_jobs_key, Scheduler.scheduler_lock_key, *(f"rq:job:{i}" for i in ids), *instances)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A client that does not decode replies, as rq and rq-scheduler need."""
    client = redis.Redis.from_url(redis_url)
    clear_rq_scheduler(client)
    yield client
    clear_rq_scheduler(client)
    client.close()


@pytest.fixture
def scheduling(request: pytest.FixtureRequest, raw: redis.Redis) -> Cluster:
    """A balancer, two workers and ``jb scheduler`` passing every 0.2 s."""
    the_cluster: Cluster = request.getfixturevalue("cluster")
    the_cluster.balancer()
    the_cluster.worker("w1")
    the_cluster.worker("w2")
    the_cluster.spawn("scheduler", "scheduler", "--interval", SCHEDULER_INTERVAL_S)
    wait_for(lambda: raw.keys(f"{Scheduler.redis_scheduler_namespace_prefix}*"), 15, what="the scheduler up")
    return the_cluster


def has_status(on: Cluster, job_id: str, status: Status) -> bool:
    try:
        return on.client.record(job_id).status is status
    except NoSuchJob:  # an rq-scheduler entry has no record until it is handed over
        return False


def wait_status(on: Cluster, job_id: str, status: Status, timeout: float = 20) -> None:
    wait_for(lambda: has_status(on, job_id, status), timeout, what=f"job {job_id} {status.value}")
