"""The balancer against a real Redis, with simulated workers (tests/integration/sim.py)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from jobbalancer.balancer import Balancer
from jobbalancer.balancer.policies import JobView, WorkerView
from jobbalancer.errors import InvalidSetting
from jobbalancer.job import EXIT_REJECTED, Status
from jobbalancer.keys import INBOX_GROUP, Keys
from jobbalancer.scripts import Scripts
from jobbalancer.server import EmbeddedRedis
from tests.helpers import free_port, wait_for
from tests.integration.sim import Cluster, running_cluster


@pytest.fixture
def cluster(redis_url: str, prefix: str, r: redis.Redis) -> Iterator[Cluster]:
    r.hset(
        f"{prefix}:config", "prefetch", "0"
    )  # these tests count slots exactly; tests/e2e/test_prefetch.py has prefetch
    yield from running_cluster(redis_url, prefix, r)


class Usurper:
    """A policy that lets another balancer seize the lease while a pass is being decided."""

    seize: tuple[redis.Redis, str] | None = None

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        if Usurper.seize is not None:
            client, key = Usurper.seize
            Usurper.seize = None
            client.set(key, "999999:usurper", px=60_000)
        return candidates[0]


def test_places_only_on_live_workers_of_the_queue_and_never_past_their_slots(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=2, queues=("q",))
    b = cluster.worker("b", slots=1, queues=("q", "other"))
    other = cluster.worker("c", slots=5, queues=("other",))
    draining = cluster.worker("e", slots=5, queues=("q",), state="draining")
    # "d" serves q but its last heartbeat is ancient: it is dead.
    cluster.r.hset(cluster.keys.worker("d"), mapping={"slots": 5, "queues": "q", "state": "running"})
    cluster.r.zadd(cluster.keys.workers, {"d": 1})
    cluster.balancer()
    jobs = [f"j{n}" for n in range(8)]
    for job_id in jobs:
        cluster.submit(job_id, queue="q")
    wait_for(lambda: a.outstanding() == 2 and b.outstanding() == 1 and cluster.waiting("q") == 5, what="3 placed")

    def settle_one_each() -> bool:
        for sim in (a, b):
            assert sim.outstanding() <= sim.slots
        for sim in (a, b):
            for job_id in sim.job_ids()[:1]:
                sim.finish(job_id)
        return all(cluster.record(j).status is Status.SUCCEEDED for j in jobs)

    wait_for(settle_one_each, what="all jobs to succeed")
    assert {cluster.record(j).worker for j in jobs} == {"a", "b"}
    assert other.outstanding() == draining.outstanding() == 0
    assert cluster.r.xlen(cluster.keys.worker_jobs("d")) == 0


def test_waiting_jobs_are_placed_as_slots_free_by_priority_then_fifo(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=1)
    cluster.balancer()
    cluster.submit("blocker")
    wait_for(lambda: cluster.placed_on("blocker") == "a")
    for job_id, priority in [("low1", 0), ("high1", 5), ("low2", 0), ("high2", 5), ("mid", 2)]:
        cluster.submit(job_id, priority=priority)
    wait_for(lambda: cluster.waiting() == 5, what="five waiting jobs")
    assert cluster.record("high1").status is Status.QUEUED

    order = []
    for _ in range(6):
        (current,) = wait_for(a.job_ids, what="a job on a")
        order.append(current)
        a.finish(current)  # the freed slot ticks the balancer, which places the next one
    assert order == ["blocker", "high1", "high2", "mid", "low1", "low2"]
    assert cluster.waiting() == 0


def test_realtime_job_is_rejected_when_all_slots_are_busy_and_placed_when_one_is_free(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=1)
    cluster.balancer()
    cluster.submit("busy")
    wait_for(lambda: cluster.placed_on("busy") == "a")
    cluster.submit("rt1", realtime=True)
    rejected = wait_for(lambda: (rec := cluster.record("rt1")).finished and rec)
    assert rejected.status is Status.REJECTED
    assert rejected.exit_code == EXIT_REJECTED == rejected.exit_status
    assert "free slot" in (rejected.error or "")

    a.finish("busy")
    cluster.submit("rt2", realtime=True)
    wait_for(lambda: cluster.placed_on("rt2") == "a", what="rt2 placed")


def test_least_loaded_keeps_equal_workers_within_one_job(cluster: Cluster) -> None:
    a, b = cluster.worker("a", slots=4), cluster.worker("b", slots=4)
    cluster.balancer()
    sims = {"a": a, "b": b}
    in_flight: list[str] = []
    for n in range(16):
        cluster.submit(f"s{n}")
        worker = wait_for(lambda n=n: cluster.placed_on(f"s{n}"), what=f"s{n} placed")
        in_flight.append(f"s{n}")
        assert abs(a.outstanding() - b.outstanding()) <= 1
        if len(in_flight) >= 4:  # a steady stream: the oldest job finishes as a new one arrives
            oldest = in_flight.pop(0)
            sims[cluster.record(oldest).worker or worker].finish(oldest)
    per_worker = [sum(1 for n in range(16) if cluster.record(f"s{n}").worker == w) for w in ("a", "b")]
    assert abs(per_worker[0] - per_worker[1]) <= 1


def test_max_jobs_per_worker_set_live_caps_placement(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=4)
    balancer = cluster.leader(cluster.balancer())
    cluster.r.hset(cluster.keys.config, "max_jobs_per_worker", "1")
    wait_for(lambda: balancer.settings.max_jobs_per_worker == 1, what="the cap to be read")
    for n in range(3):
        cluster.submit(f"c{n}")
    wait_for(lambda: cluster.waiting() == 2, what="two jobs waiting behind the cap")
    assert a.outstanding() == 1

    cluster.r.hset(cluster.keys.config, "max_jobs_per_worker", "0")
    wait_for(lambda: a.outstanding() == 3, what="the cap lifted")
    assert cluster.waiting() == 0


def test_policy_change_in_the_config_hash_applies_live(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "jobbalancer.balancer")
    hot, cool = cluster.worker("hot", slots=10, cpu=90.0), cluster.worker("cool", slots=10, cpu=5.0)
    balancer = cluster.balancer()
    for job_id in ("p1", "p2"):
        cluster.submit(job_id)
        wait_for(lambda job_id=job_id: cluster.placed_on(job_id))
    assert hot.outstanding() == cool.outstanding() == 1  # least-loaded ignores cpu

    cluster.r.hset(cluster.keys.config, "policy", "cpu")
    wait_for(lambda: balancer.settings.policy == "cpu", what="the cpu policy")
    for job_id in ("p3", "p4", "p5"):
        cluster.submit(job_id)
        wait_for(lambda job_id=job_id: cluster.placed_on(job_id) == "cool")

    cluster.r.hset(cluster.keys.config, "policy", "no-such-policy")
    wait_for(lambda: "no-such-policy" in caplog.text, what="the bad policy to be reported")
    cluster.submit("p6")
    wait_for(lambda: cluster.placed_on("p6") == "cool")
    assert balancer.settings.policy == "cpu"
    assert hot.outstanding() == 1


def test_malformed_inbox_entries_are_dead_lettered_and_placement_goes_on(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=2)
    # All entries are in the inbox before the balancer starts, so its first pass reads them together.
    # A record exists for "odd", but its inbox entry is garbage: the entry dies, the record stays.
    cluster.r.hset(cluster.keys.job("odd"), mapping={"status": "queued", "queue": "default", "priority": "0"})
    cluster.r.xadd(cluster.keys.inbox, {"queue": "default", "priority": "1"})
    cluster.r.xadd(cluster.keys.inbox, {"id": "odd", "queue": "default", "priority": "abc", "realtime": "0"})
    # Well-formed, but its job key holds a string: the script fails on it, and on nothing else.
    cluster.r.set(cluster.keys.job("clobbered"), "not a hash")
    cluster.r.xadd(cluster.keys.inbox, {"id": "clobbered", "queue": "default", "priority": "0", "realtime": "0"})
    cluster.submit("fine")
    cluster.balancer()
    wait_for(lambda: cluster.placed_on("fine") == "a")

    dead = wait_for(lambda: len(rows := cluster.r.xrange(cluster.keys.dead)) == 3 and rows, what="three dead entries")
    (_, no_id), (_, bad_priority), (_, clobbered) = dead
    assert no_id["id"] == "" and "no job id" in no_id["reason"]
    assert json.loads(no_id["raw"]) == {"queue": "default", "priority": "1"}
    assert bad_priority["id"] == "odd" and "priority 'abc'" in bad_priority["reason"]
    assert json.loads(bad_priority["raw"])["priority"] == "abc"
    assert clobbered["id"] == "clobbered" and "WRONGTYPE" in clobbered["reason"]
    assert cluster.r.hget(cluster.keys.job("odd"), "status") == "queued"
    assert a.job_ids() == ["fine"]
    assert cluster.r.xlen(cluster.keys.inbox) == 0


def test_a_stale_waiting_member_does_not_block_its_queue(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "jobbalancer.balancer")
    a = cluster.worker("a", slots=1)
    # A member left in the waiting set for a job that no longer exists, ahead of everything.
    cluster.r.zadd(cluster.keys.waiting("default"), {"0000000000000000:vanished": -100})
    cluster.r.sadd(cluster.keys.waitq, "default")
    cluster.balancer()
    cluster.submit("real")
    wait_for(lambda: cluster.placed_on("real") == "a", what="the real job placed past the stale head")
    assert cluster.waiting() == 0
    assert not cluster.r.sismember(cluster.keys.waitq, "default")
    assert a.job_ids() == ["real"]
    assert "dropped stale waiting member 0000000000000000:vanished" in caplog.text


def test_dead_worker_jobs_are_requeued_and_placed_on_a_live_one(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "jobbalancer.balancer")
    a = cluster.worker("a", slots=2)
    cluster.balancer(heartbeat_timeout_s=1)
    cluster.submit("run1")
    cluster.submit("idle1")
    wait_for(lambda: a.outstanding() == 2)
    a.start("run1")
    b = cluster.worker("b", slots=2)
    a.alive = False

    wait_for(lambda: cluster.placed_on("run1") == "b" and cluster.placed_on("idle1") == "b", what="jobs moved to b")
    run1, idle1 = cluster.record("run1"), cluster.record("idle1")
    assert (run1.attempts, idle1.attempts) == (2, 2)
    assert cluster.r.hget(cluster.keys.job("run1"), "lost") == "1"  # it was running when a died
    assert cluster.r.hget(cluster.keys.job("idle1"), "lost") is None
    assert sorted(b.job_ids()) == ["idle1", "run1"]
    assert cluster.r.zscore(cluster.keys.workers, "a") is None
    assert "worker a sent no heartbeat" in caplog.text and "2 re-queued" in caplog.text


def test_job_lost_past_the_poison_limit_fails_and_is_dead_lettered(cluster: Cluster) -> None:
    cluster.r.hset(cluster.keys.config, "poison_limit", "1")
    a = cluster.worker("a", slots=1)
    cluster.balancer(heartbeat_timeout_s=1)
    cluster.submit("poison")
    wait_for(lambda: cluster.placed_on("poison") == "a")
    a.start("poison")
    a.alive = False

    failed = wait_for(lambda: (rec := cluster.record("poison")).finished and rec, what="the job to fail")
    assert failed.status is Status.FAILED
    assert "poison limit" in (failed.error or "")
    dead = cluster.r.xrange(cluster.keys.dead)
    assert [fields["id"] for _, fields in dead] == ["poison"]


def test_backstop_times_out_a_job_its_worker_did_not_stop(cluster: Cluster) -> None:
    cluster.r.hset(cluster.keys.config, "kill_grace", "0")
    a = cluster.worker("a", slots=1)
    cluster.balancer(heartbeat_timeout_s=1)
    cluster.submit("stuck", watchdog="0.05")
    wait_for(lambda: cluster.placed_on("stuck") == "a")
    a.start("stuck")  # ... and the simulated worker never kills it

    timed_out = wait_for(lambda: (rec := cluster.record("stuck")).finished and rec, what="the backstop")
    assert timed_out.status is Status.TIMED_OUT and timed_out.exit_code == 124
    control = cluster.r.xrange(cluster.keys.worker_ctl("a"))
    assert [(f["op"], f["id"]) for _, f in control] == [("cancel", "stuck")]
    assert cluster.r.zscore(cluster.keys.workers, "a") is not None  # the worker itself is alive


def test_only_one_balancer_leads_and_a_standby_takes_over_what_the_leader_left(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=5)
    first, second = cluster.balancer(name="first"), cluster.balancer(name="second")
    wait_for(lambda: first.is_leader or second.is_leader, what="a leader")
    for _ in range(10):  # sampled while both run: never two leaders
        assert not (first.is_leader and second.is_leader)
        threading.Event().wait(0.03)
    leader, standby = (first, second) if first.is_leader else (second, first)
    cluster.submit("before")
    wait_for(lambda: cluster.placed_on("before") == "a")

    # The leader is deposed: a new term starts elsewhere, and an entry it read is left unplaced.
    cluster.r.set(cluster.keys.leader, "999999:elsewhere", px=1200)
    cluster.submit("orphan")
    cluster.r.xreadgroup(INBOX_GROUP, leader.name, {cluster.keys.inbox: ">"}, count=10)
    pending = cluster.r.xpending(cluster.keys.inbox, INBOX_GROUP)
    assert pending["consumers"] == [{"name": leader.name, "pending": 1}]
    assert cluster.record("orphan").status is Status.QUEUED
    leader.stop()

    wait_for(lambda: cluster.placed_on("orphan") == "a", what="the new leader to place the orphan")
    wait_for(lambda: standby.is_leader, what="the standby to finish taking over")  # claims are placed first
    assert not leader.is_leader
    cluster.submit("after")
    wait_for(lambda: cluster.placed_on("after") == "a")
    assert sorted(a.job_ids()) == ["after", "before", "orphan"]

    standby.stop()  # gives the lease up at once rather than letting it lapse
    assert cluster.r.get(cluster.keys.leader) is None


def test_a_deposed_leaders_dispatch_is_fenced_and_assigns_nothing(cluster: Cluster) -> None:
    a = cluster.worker("a", slots=2)
    Usurper.seize = (cluster.r, cluster.keys.leader)
    try:
        balancer = cluster.leader(cluster.balancer(policy=f"{__name__}:Usurper"))
        cluster.submit("contested")
        wait_for(lambda: Usurper.seize is None and not balancer.is_leader, what="the leader to be fenced out")
    finally:
        Usurper.seize = None
    assert cluster.record("contested").status is Status.QUEUED
    assert a.outstanding() == 0 and balancer.placed == 0
    pending = cluster.r.xpending(cluster.keys.inbox, INBOX_GROUP)
    assert pending["consumers"] == [{"name": balancer.name, "pending": 1}]  # read, refused, still owed

    cluster.r.delete(cluster.keys.leader)  # the usurper goes away: a new term, which places the job
    wait_for(lambda: cluster.placed_on("contested") == "a", what="placement in the next term")
    wait_for(lambda: balancer.is_leader, what="the takeover to complete")


def test_constructor_validates_and_start_writes_the_cluster_settings(cluster: Cluster) -> None:
    with pytest.raises(InvalidSetting, match="least-loaded"):
        Balancer(cluster.url, cluster.keys.prefix, policy="fastest")
    with pytest.raises(InvalidSetting, match="heartbeat_timeout"):
        Balancer(cluster.url, cluster.keys.prefix, heartbeat_timeout_s=0)
    cluster.r.hset(cluster.keys.config, "policy", "random")
    cluster.balancer(policy="p2c", heartbeat_timeout_s=2.5)
    wait_for(lambda: cluster.r.hget(cluster.keys.config, "policy") == "p2c", what="the policy written")
    assert cluster.r.hget(cluster.keys.config, "heartbeat_timeout") == "2.5"


def test_a_redis_outage_is_waited_out(tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "jobbalancer.balancer")
    server = EmbeddedRedis(tmp_path, free_port()).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    cluster = Cluster(server.url, client, Keys(prefix), Scripts(client))
    try:
        a = cluster.worker("a", slots=4)
        balancer = cluster.leader(cluster.balancer())
        cluster.submit("pre")
        wait_for(lambda: cluster.placed_on("pre") == "a")

        server.stop()
        wait_for(lambda: "unavailable" in caplog.text, what="the outage to be logged")
        server.start()  # same port and AOF: the data is back
        a.beat()
        cluster.submit("post")
        wait_for(lambda: cluster.placed_on("post") == "a", what="placement after the outage")
        assert balancer.is_leader
        assert caplog.text.count("is unavailable") == 1  # once per outage, however many retries
    finally:
        cluster.close()
        client.close()
        server.stop()
