"""Big passes: the balancer applies one pass while it plans the next (``balancer/inflight.py``).

A backlog already in the inbox is read ``batch`` entries a pass; passes that big send their
dispatch and read the next pass ahead. Whatever the overlap, every job is placed exactly once, in
submission order on each worker, evenly, and the jobs beyond the free slots wait and are placed
in order as slots free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import redis

from jobbalancer.balancer.loop import OVERLAP_FROM
from jobbalancer.balancer.policies import JobView, WorkerView
from jobbalancer.job import Status
from jobbalancer.keys import INBOX_GROUP
from tests.helpers import wait_for
from tests.integration.sim import Cluster, Sim, running_cluster

BATCH = OVERLAP_FROM + 44  # every full pass overlaps the next


@pytest.fixture
def cluster(redis_url: str, prefix: str, r: redis.Redis) -> Iterator[Cluster]:
    r.hset(f"{prefix}:config", "prefetch", "0")  # slots are counted exactly here
    yield from running_cluster(redis_url, prefix, r)


class LateUsurper:
    """A policy that lets another balancer seize the lease while the second pass is planned: the
    first pass's dispatch goes synchronously (its maintenance is due), later ones overlap."""

    seize: tuple[redis.Redis, str] | None = None
    calls = 0

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        LateUsurper.calls += 1
        if LateUsurper.seize is not None and LateUsurper.calls > BATCH:
            client, key = LateUsurper.seize
            LateUsurper.seize = None
            client.set(key, "999999:usurper", px=60_000)
        return candidates[0]


def submit_backlog(c: Cluster, count: int) -> list[str]:
    ids = [f"j{n:05d}" for n in range(count)]
    for job_id in ids:
        c.submit(job_id)
    return ids


def placed(sims: list[Sim]) -> dict[str, list[str]]:
    return {sim.name: sim.job_ids() for sim in sims}


def test_a_backlog_read_in_overlapping_passes_is_placed_once_in_order_and_evenly(cluster: Cluster) -> None:
    sims = [cluster.worker(name, slots=2 * BATCH) for name in ("w1", "w2", "w3")]
    ids = submit_backlog(cluster, 4 * BATCH + 17)
    balancer = cluster.leader(cluster.balancer(batch=BATCH))
    wait_for(lambda: sum(sim.outstanding() for sim in sims) == len(ids), what="the backlog placed")

    by_worker = placed(sims)
    assert sorted(j for jobs in by_worker.values() for j in jobs) == ids  # each job once
    for jobs in by_worker.values():
        assert jobs == sorted(jobs)  # a worker gets its jobs in submission order
    counts = [len(jobs) for jobs in by_worker.values()]
    assert max(counts) - min(counts) <= 1
    assert all(cluster.record(j).status is Status.ASSIGNED for j in ids)
    wait_for(lambda: balancer.placed == len(ids), what="the balancer to count every placement")
    wait_for(lambda: cluster.r.xlen(cluster.keys.inbox) == 0, what="the inbox trimmed")


def test_a_backlog_beyond_the_slots_waits_and_is_placed_in_order_as_slots_free(cluster: Cluster) -> None:
    sims = [cluster.worker(name, slots=BATCH) for name in ("w1", "w2")]
    ids = submit_backlog(cluster, 3 * BATCH)
    cluster.leader(cluster.balancer(batch=BATCH))
    wait_for(lambda: cluster.waiting() == BATCH, what="the jobs beyond the slots to wait")
    first = sorted(j for jobs in placed(sims).values() for j in jobs)
    assert first == ids[: 2 * BATCH]  # the oldest got the slots

    for sim in sims:  # free a slot at a time: each goes to the oldest waiting job
        for job_id in sim.job_ids()[:5]:
            sim.finish(job_id)
    wait_for(lambda: cluster.waiting() == BATCH - 10, what="ten waiting jobs placed")
    assert all(cluster.record(j).status is Status.ASSIGNED for j in ids[2 * BATCH : 2 * BATCH + 10])
    assert all(cluster.record(j).status is Status.QUEUED for j in ids[2 * BATCH + 10 :])


def test_a_deposed_leaders_dispatch_in_flight_is_fenced_and_its_entries_stay_owed(cluster: Cluster) -> None:
    sims = [cluster.worker(name, slots=4 * BATCH) for name in ("w1", "w2")]
    ids = submit_backlog(cluster, 4 * BATCH)
    LateUsurper.seize, LateUsurper.calls = (cluster.r, cluster.keys.leader), 0
    try:
        balancer = cluster.leader(cluster.balancer(batch=BATCH, policy=f"{__name__}:LateUsurper"))
        wait_for(lambda: LateUsurper.seize is None and not balancer.is_leader, what="the leader to be fenced out")
    finally:
        LateUsurper.seize = None
    assert sum(sim.outstanding() for sim in sims) == balancer.placed == BATCH  # the first pass only
    assert sum(cluster.record(j).status is Status.QUEUED for j in ids) == 3 * BATCH
    pending = cluster.r.xpending(cluster.keys.inbox, INBOX_GROUP)
    assert pending["pending"] >= 2 * BATCH  # read (with the next pass's, read ahead), refused, still owed

    cluster.r.delete(cluster.keys.leader)  # the usurper goes away: a new term places the rest
    wait_for(lambda: sum(sim.outstanding() for sim in sims) == len(ids), what="the rest placed in the next term")
    assert sorted(j for sim in sims for j in sim.job_ids()) == ids
