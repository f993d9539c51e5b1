"""Entries trimmed or deleted under a job while it is pending: the job is re-queued, never dropped."""

from __future__ import annotations

import signal

import pytest

from jobbalancer import Status
from tests.chaos.harness import ChaosCluster
from tests.helpers import wait_for

pytestmark = pytest.mark.chaos


def _entry(chaos: ChaosCluster, job_id: str) -> str:
    return str(chaos.client.redis.hget(f"{chaos.prefix}:job:{job_id}", "entry"))


def test_trimmed_stream_of_a_worker_that_then_dies(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", 1)
    (job_id,) = chaos.submit(1, 2)
    wait_for(lambda: chaos.running_on("w1"), 20, what="the job running on w1")
    assert chaos.client.redis.xtrim(f"{chaos.prefix}:w:w1:jobs", maxlen=0) == 1  # pending, now gone
    chaos.signal("w1", signal.SIGKILL, "SIGKILL worker")
    chaos.worker("w2", 1)
    chaos.verify("trimmed stream, dead worker")
    record = chaos.client.record(job_id)
    assert (record.worker, record.attempts) == ("w2", 2)


def test_deleted_entry_of_a_job_not_yet_read_is_requeued(chaos: ChaosCluster) -> None:
    chaos.client.set_setting("prefetch", "1")  # a second job waits in w1's stream, unread
    chaos.balancer()
    chaos.worker("w1", 1)
    first, second = chaos.submit(2, 1.5)
    wait_for(lambda: chaos.statuses([second])[second] == Status.ASSIGNED, 20, what="the second job prefetched")
    stream = f"{chaos.prefix}:w:w1:jobs"
    assert chaos.client.redis.xdel(stream, _entry(chaos, second)) == 1
    chaos.verify("deleted unread entry")
    assert "lost its place" in chaos.log("b1")
    assert chaos.client.record(first).attempts == 1


def test_deleted_entry_of_a_running_job_still_records_once(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", 1)
    (job_id,) = chaos.submit(1, 1)
    wait_for(lambda: chaos.running_on("w1"), 20, what="the job running on w1")
    assert chaos.client.redis.xdel(f"{chaos.prefix}:w:w1:jobs", _entry(chaos, job_id)) == 1
    chaos.verify("deleted running entry", max_duplicates=0)
    assert chaos.client.record(job_id).attempts == 1


def test_waiting_member_deleted_by_hand_is_put_back(chaos: ChaosCluster) -> None:
    chaos.client.set_setting("prefetch", "0")  # the second job waits in the waiting zset
    chaos.balancer()
    chaos.worker("w1", 1)
    first, second = chaos.submit(2, 1.5)
    wait_for(lambda: chaos.client.redis.hget(f"{chaos.prefix}:job:{second}", "wm"), 20, what="the second waiting")
    member = chaos.client.redis.hget(f"{chaos.prefix}:job:{second}", "wm")
    assert chaos.client.redis.zrem(f"{chaos.prefix}:waiting:default", member) == 1
    chaos.verify("deleted waiting member", max_duplicates=0)
    assert "lost its place" in chaos.log("b1")
