"""The heap behind the built-in ranking policies (``balancer/pool.py``) decides as ``choose`` would."""

from __future__ import annotations

import random

import pytest

from jobbalancer.balancer.plan import plan_pass
from jobbalancer.balancer.policies import LeastLoaded, LowestCpu, RoundRobin, WorkerView, ranking


def fleet(rng: random.Random, count: int) -> list[WorkerView]:
    return [
        WorkerView(
            name=f"w{n:03d}",
            slots=rng.choice([1, 2, 4, 8]),
            outstanding=rng.randint(0, 6),
            cpu=float(rng.choice([5, 50, 95])),
            queues=frozenset(rng.sample(["a", "b", "c"], rng.randint(1, 2))),
            prefetch=rng.choice([0, 2]),
        )
        for n in range(count)
    ]


def entries(rng: random.Random, count: int) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"{n}-0", {"id": f"j{n}", "queue": rng.choice("abc"), "priority": str(rng.randint(-2, 2)), "realtime": "0"})
        for n in range(count)
    ]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("policy_class", [LeastLoaded, LowestCpu])
def test_every_heap_choice_has_the_lowest_rank_and_respects_free_slots(seed: int, policy_class: type) -> None:
    rng = random.Random(seed)
    workers = fleet(rng, rng.randint(1, 40))
    batch = entries(rng, rng.randint(1, 150))
    by_id = {fields["id"]: fields for _, fields in batch}
    policy = policy_class()
    ops = plan_pass(batch, workers, {}, policy.choose, seed, ranking(policy))
    assert len(ops) == len(batch)
    views = {w.name: w for w in workers}
    for op in ops:
        if op["o"] != "a":
            continue
        queue = by_id[op["id"]]["queue"]
        candidates = [w for w in views.values() if queue in w.queues and w.free > 0]
        chosen = views[op["w"]]
        assert chosen in candidates
        assert policy.rank(chosen) == min(policy.rank(w) for w in candidates)
        views[chosen.name] = chosen.with_outstanding(chosen.outstanding + 1)
    waits = [op for op in ops if op["o"] == "w"]
    for op in waits:  # a job waits only when its queue had no free slot left
        queue = by_id[op["id"]]["queue"]
        assert all(w.free <= 0 for w in views.values() if queue in w.queues)


def test_round_robin_heap_goes_round_by_name_from_the_last_pick() -> None:
    policy = RoundRobin()
    workers = [WorkerView(name=n, slots=10) for n in ("c", "a", "d", "b")]
    batch = [(f"{n}-0", {"id": f"j{n}", "queue": "default", "priority": "0", "realtime": "0"}) for n in range(6)]
    first = plan_pass(batch, workers, {}, policy.choose, 0, ranking(policy))
    assert [op["w"] for op in first] == ["a", "b", "c", "d", "a", "b"]
    again = plan_pass(batch[:3], workers, {}, policy.choose, 1, ranking(policy))
    assert [op["w"] for op in again] == ["c", "d", "a"]  # the turn carried over from "b"


def test_least_loaded_heap_fills_equal_workers_evenly_within_one_pass() -> None:
    policy = LeastLoaded()
    workers = [WorkerView(name=f"w{n}", slots=5, outstanding=n % 2) for n in range(6)]
    batch = [(f"{n}-0", {"id": f"j{n}", "queue": "default", "priority": "0", "realtime": "0"}) for n in range(15)]
    ops = plan_pass(batch, workers, {}, policy.choose, 0, ranking(policy))
    placed = {w.name: w.outstanding for w in workers}
    for op in ops:
        placed[op["w"]] += 1
    assert sorted(placed.values()) == [3, 3, 3, 3, 3, 3]  # 3 + 15 spread to 18 = 6 × 3
