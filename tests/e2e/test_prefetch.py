"""Prefetch without its usual unfairness: queued work never waits behind a long job while a slot idles."""

from __future__ import annotations

from jobbalancer import Status
from tests.e2e.conftest import Cluster
from tests.helpers import wait_for


def test_prefetched_jobs_move_to_an_idle_worker(cluster: Cluster) -> None:
    cluster.client.set_setting("prefetch", "2")
    cluster.balancer()
    cluster.worker("w1", 1)
    long = cluster.client.submit("sleep 60", watchdog=120)
    wait_for(lambda: long.status() is Status.RUNNING, 15, what="the long job running on w1")
    short = [cluster.client.submit(f"echo {n}") for n in range(2)]
    wait_for(lambda: all(j.record().worker == "w1" for j in short), 10, what="both short jobs prefetched by w1")
    assert cluster.client.redis.xlen(f"{cluster.prefix}:w:w1:jobs") == 3  # 1 slot + prefetch 2
    cluster.worker("w2", 1)
    for job in short:
        record = job.wait(15)
        assert (record.status, record.worker, record.attempts) == (Status.SUCCEEDED, "w2", 1)
    after = long.record()
    assert (after.status, after.worker, after.attempts) == (Status.RUNNING, "w1", 1)  # running work is never taken
    long.cancel()
