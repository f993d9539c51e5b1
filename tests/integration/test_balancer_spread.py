"""How evenly the built-in policies spread a steady stream, with a real balancer on a real Redis.

Workers are simulated (``tests/integration/sim.py``: real heartbeats, jobs started and completed with the
real ``start.lua``/``complete.lua``), so the test decides when each job ends: the same service
time for every job, i.e. completions in the order of placement, which is what equal workers under
a steady stream give. Outstanding jobs per worker are read atomically (one MULTI of ``XLEN``s)
after every submit and every completion.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pytest
import redis

from jobbalancer.balancer import Balancer
from jobbalancer.job import Status
from tests.helpers import wait_for
from tests.integration.sim import Cluster, Sim, running_cluster


@pytest.fixture
def steady(redis_url: str, prefix: str, r: redis.Redis) -> Iterator[Cluster]:
    yield from running_cluster(redis_url, prefix, r)


def outstanding(c: Cluster, sims: list[Sim]) -> dict[str, int]:
    pipe = c.r.pipeline(transaction=True)
    for sim in sims:
        pipe.xlen(c.keys.worker_jobs(sim.name))
    return dict(zip((s.name for s in sims), pipe.execute(), strict=True))


def submit_placed(c: Cluster, job_ids: list[str]) -> None:
    for job_id in job_ids:
        c.submit(job_id)
    wait_for(lambda: all(c.placed_on(j) for j in job_ids), what=f"{job_ids} placed")


def finish_oldest(c: Cluster, sims: dict[str, Sim], in_flight: deque[str]) -> str:
    job_id = in_flight.popleft()
    worker = c.placed_on(job_id)
    assert worker is not None
    sims[worker].finish(job_id)
    return worker


@pytest.mark.parametrize("prefetch", ["0", "2"])
def test_least_loaded_keeps_equal_workers_within_one_job_of_each_other(steady: Cluster, prefetch: str) -> None:
    steady.r.hset(steady.keys.config, mapping={"prefetch": prefetch, "policy": "least-loaded"})
    sims = [steady.worker(name, slots=3) for name in ("w1", "w2", "w3", "w4")]
    by_name = {s.name: s for s in sims}
    steady.leader(steady.balancer())
    in_flight: deque[str] = deque()
    samples: list[dict[str, int]] = []
    bursts = [1, 2, 3, 1, 4, 2, 1, 3, 2, 4, 1, 1, 3, 2, 4, 1, 2, 3] * 2  # jobs arriving together
    for n, burst in enumerate(bursts):
        ids = [f"j{n}-{k}" for k in range(burst)]
        submit_placed(steady, ids)
        in_flight.extend(ids)
        samples.append(outstanding(steady, sims))
        while len(in_flight) > 7:  # the steady depth: every job takes as long as 7 arrivals
            finish_oldest(steady, by_name, in_flight)
            samples.append(outstanding(steady, sims))
    spreads = [max(s.values()) - min(s.values()) for s in samples]
    assert max(spreads) <= 1, [s for s in samples if max(s.values()) - min(s.values()) > 1]
    placed = [steady.record(f"j{n}-0").worker for n in range(len(bursts))]
    assert set(placed) == set(by_name), "every worker took part"


def test_cpu_policy_sends_new_work_away_from_a_worker_whose_host_is_busy(steady: Cluster) -> None:
    steady.r.hset(steady.keys.config, mapping={"prefetch": "0", "policy": "cpu"})
    busy = steady.worker("busy", slots=4, cpu=97.0)
    calm = [steady.worker(name, slots=3, cpu=12.0) for name in ("calm1", "calm2")]
    balancer = steady.leader(steady.balancer())
    for n in range(6):  # the calm ones have 6 slots: all 6 fit there, none needs the busy host
        submit_placed(steady, [f"a{n}"])
    assert busy.outstanding() == 0
    assert sorted(s.outstanding() for s in calm) == [3, 3]  # equal CPU: least-loaded among them

    # Once they are full, the busy host's free slots are still better than making a job wait.
    submit_placed(steady, ["overflow"])
    assert steady.placed_on("overflow") == "busy"

    # The load moves: calm1's host gets busy, the busy one calms down. New work follows.
    calm[0].cpu, busy.cpu = 99.0, 5.0
    seen = balancer.passes
    wait_for(lambda: balancer.passes >= seen + 3, what="passes that read the new heartbeats")
    for job_id in [f"a{n}" for n in range(6)] + ["overflow"]:
        worker = steady.placed_on(job_id)
        assert worker is not None
        next(s for s in [busy, *calm] if s.name == worker).finish(job_id)
    submit_placed(steady, [f"b{n}" for n in range(4)])
    assert busy.outstanding() == 4 and calm[0].outstanding() == 0
    assert all(steady.record(f"b{n}").status == Status.ASSIGNED for n in range(4))


def test_balancer_counts_freed_slots_without_reading_every_stream(steady: Cluster) -> None:
    """Slots freed by completions, cancels and a restart's settle reach the leader's picture at
    once (well before its full look at every stream, every few seconds)."""
    steady.r.hset(steady.keys.config, "prefetch", "0")
    a = steady.worker("a", slots=2)
    balancer: Balancer = steady.leader(steady.balancer())
    submit_placed(steady, ["x1", "x2"])
    steady.submit("x3")
    wait_for(lambda: steady.waiting() == 1, what="x3 waiting for a slot")
    a.finish("x1")  # complete.lua: a freed slot, counted in <p>:freed
    wait_for(lambda: steady.placed_on("x3") == "a", timeout=3, what="x3 placed in the freed slot")
    steady.submit("x4")
    wait_for(lambda: steady.waiting() == 1, what="x4 waiting")
    assert steady.scripts.cancel(steady.keys.prefix, "x2") == "cancelled"  # an assigned job: its entry dropped
    wait_for(lambda: steady.placed_on("x4") == "a", timeout=3, what="x4 placed in the slot the cancel freed")
    # The worker restarts under its name: its leftovers go back to waiting (release.lua, unregister
    # 0) and its stream is emptied; the leader sees two free slots and places them again.
    assert steady.scripts.release(steady.keys.prefix, "", "a", "lost", "0")[0] == 2
    wait_for(lambda: a.outstanding() == 2, timeout=3, what="x3 and x4 placed again")
    assert sorted(a.job_ids()) == ["x3", "x4"] and steady.waiting() == 0 and balancer.is_leader
