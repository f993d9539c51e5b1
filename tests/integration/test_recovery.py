"""Jobs whose place was deleted from outside come back: the balancer's audit finds and re-queues them.

Each test causes the fault on a cluster of real processes (``tests/chaos/harness.py``) and checks
what a user sees: the job ends (succeeded, or timed out by its watchdog) instead of staying
``queued`` or ``running`` forever. The audit's rules themselves are checked on one Redis with the
scripts, without processes, at the end.
"""

from __future__ import annotations

import signal

import redis

from jobbalancer import Client, Status
from jobbalancer.balancer.audit import Audit
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from tests.chaos.harness import HEARTBEAT_TIMEOUT_S, ChaosCluster
from tests.helpers import wait_for


def _field(chaos: ChaosCluster, job_id: str, name: str) -> str | None:
    value = chaos.client.redis.hget(f"{chaos.prefix}:job:{job_id}", name)
    return None if value is None else str(value)


def _not_registered(chaos: ChaosCluster, worker: str) -> bool:
    return chaos.client.redis.zscore(f"{chaos.prefix}:workers", worker) is None


def test_a_job_whose_inbox_entry_was_deleted_before_placing_still_runs(chaos: ChaosCluster) -> None:
    (job_id,) = chaos.submit(1, 0.1)  # no balancer yet: the job sits in the inbox
    entry = _field(chaos, job_id, "ie")
    assert entry and chaos.client.redis.xdel(f"{chaos.prefix}:inbox", entry) == 1
    chaos.worker("w1", 1)
    chaos.balancer()
    chaos.verify("deleted inbox entry", max_duplicates=0)
    assert chaos.client.record(job_id).attempts == 1
    assert "lost its place" in chaos.log("b1")


def test_a_running_job_without_its_entry_whose_worker_was_written_off_and_came_back_reruns(
    chaos: ChaosCluster,
) -> None:
    chaos.balancer()
    chaos.worker("w1", 1)
    (job_id,) = chaos.submit(1, 4)
    wait_for(lambda: chaos.running_on("w1"), 20, what="the job running on w1")
    # No balancer while the fault plays out, so the worker is back before any audit looks: the
    # order in which a long audit walk (many jobs) meets it in a real cluster.
    chaos.signal("b1", signal.SIGKILL)
    stream = f"{chaos.prefix}:w:w1:jobs"
    assert chaos.client.redis.xdel(stream, str(_field(chaos, job_id, "entry"))) == 1
    chaos.signal("w1", signal.SIGSTOP, "SIGSTOP worker")
    # Written off as the leader does it (release.lua, mode lost): the stream no longer names the job.
    assert chaos.client.scripts.release(chaos.prefix, "", "w1", "lost", "1") == [0, 0, 0, 0]
    assert _not_registered(chaos, "w1")
    chaos.signal("w1", signal.SIGCONT)
    wait_for(lambda: "declared it dead" in chaos.log("w1"), 20, what="w1 to learn it was written off")
    wait_for(lambda: not chaos.job_processes(), 10, what="w1 to kill the job")
    assert chaos.statuses([job_id])[job_id] == Status.RUNNING  # the leak: nobody runs it, it says running
    chaos.balancer("b2")
    chaos.verify("written off and back, entry deleted")
    record = chaos.client.record(job_id)
    assert (record.status, record.worker, record.attempts) == (Status.SUCCEEDED, "w1", 2)
    assert "no longer runs it" in chaos.log("b2") or "lost its place" in chaos.log("b2")


def test_a_job_left_running_by_a_restarted_worker_is_timed_out_by_its_watchdog(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", 1)
    job_id = chaos.submit_one(f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; sleep 1000', watchdog_s=3)
    wait_for(lambda: chaos.running_on("w1"), 20, what="the job running on w1")
    chaos.signal("b1", signal.SIGKILL)  # as above: the worker is back before a balancer looks
    assert chaos.client.redis.xdel(f"{chaos.prefix}:w:w1:jobs", str(_field(chaos, job_id, "entry"))) == 1
    chaos.signal("w1", signal.SIGKILL, "SIGKILL worker")
    chaos.procs["w1"].wait(10)
    wait_for(lambda: not chaos.job_processes(), 10, what="the guardian to kill the job")

    def name_free() -> bool:
        now_s, _ = chaos.client.redis.time()
        beat = chaos.client.redis.zscore(f"{chaos.prefix}:workers", "w1")
        return beat is not None and now_s * 1000 - beat > HEARTBEAT_TIMEOUT_S * 1000

    wait_for(name_free, 20, what="w1's name to be free for a restart")
    chaos.worker("w1", 1)  # restarted under its name: settles its stream, which no longer names the job
    assert chaos.statuses([job_id])[job_id] == Status.RUNNING

    def past_deadline() -> bool:
        now_s, now_us = chaos.client.redis.time()
        deadline = chaos.client.redis.zscore(f"{chaos.prefix}:deadlines", job_id)
        return deadline is not None and now_s * 1000 + now_us // 1000 > deadline

    wait_for(past_deadline, 10, what="the job's watchdog deadline to pass")
    chaos.balancer("b2")
    chaos.verify("restarted worker, entry deleted", expect={job_id: Status.TIMED_OUT}, max_duplicates=0)
    record = chaos.client.record(job_id)
    assert record.exit_code == 124 and "watchdog expired" in (record.error or "")


# -- the rules, on one Redis ------------------------------------------------------------------


def _audit(r: redis.Redis, prefix: str, token: str = "") -> dict[str, str]:
    return Audit(grace_s=0).step(r, Scripts(r), Keys(prefix), token)


def test_the_audit_leaves_jobs_in_the_inbox_and_jobs_waiting_for_dependencies(
    redis_url: str, prefix: str, r: redis.Redis
) -> None:
    client = Client(redis_url, prefix)
    first = client.submit("true")
    second = client.submit("true", depends_on=first)
    assert _audit(r, prefix) == {}  # the first is in the inbox; the second waits for it
    assert r.hget(f"{prefix}:job:{first.id}", "wm") is None
    r.xdel(f"{prefix}:inbox", r.hget(f"{prefix}:job:{first.id}", "ie"))
    assert _audit(r, prefix) == {first.id: "requeued"}
    assert r.hget(f"{prefix}:job:{second.id}", "wm") is None  # still waiting for the first, not among the waiting
    assert r.zrange(f"{prefix}:waiting:default", 0, -1) == [r.hget(f"{prefix}:job:{first.id}", "wm")]
    assert client.record(first.id).status is Status.QUEUED
    assert _audit(r, prefix) == {}  # found once: now it waits for a slot like any other job
    client.close()


def test_the_audit_waits_for_the_grace_before_it_counts_an_inbox_entry_missing(
    redis_url: str, prefix: str, r: redis.Redis
) -> None:
    client = Client(redis_url, prefix)
    job = client.submit("true")
    r.xdel(f"{prefix}:inbox", r.hget(f"{prefix}:job:{job.id}", "ie"))
    assert Audit(grace_s=60).step(r, Scripts(r), Keys(prefix), "") == {}
    assert r.hget(f"{prefix}:job:{job.id}", "wm") is None
    client.close()
