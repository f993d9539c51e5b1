"""Prefetch follows each worker's pace: short jobs get batches, long ones never queue behind many."""

from __future__ import annotations

import pytest
import redis

from jobbalancer.balancer.fleet import PREFETCH_FLOOR, Fleet, paced_prefetch
from jobbalancer.keys import Keys


@pytest.mark.parametrize(
    ("rate", "setting", "expected"),
    [
        (0.0, 16, PREFETCH_FLOOR),  # idle or new: as few as before prefetch followed pace
        (2.4, 16, PREFETCH_FLOOR),  # 0.85 s jobs on 2 slots: a reclaimed job waits behind 2 at most
        (100.0, 16, 5),  # 10 ms jobs: what it finishes in 50 ms
        (2000.0, 16, 16),  # no-op jobs: capped by the setting
        (2000.0, 0, 0),  # prefetch 0 keeps placement strict, however fast the worker is
        (0.0, 1, 1),
    ],
)
def test_prefetch_is_what_a_worker_finishes_in_50_ms_within_floor_and_setting(
    rate: float, setting: int, expected: int
) -> None:
    assert paced_prefetch(rate, setting) == expected


def _beat(r: redis.Redis, keys: Keys, name: str, at_ms: int, jobs_done: int) -> None:
    fields = {"slots": 2, "queues": "default", "cpu": 10, "mem": 10, "load1": 0.1, "state": "running"}
    r.hset(keys.worker(name), mapping={**fields, "jobs_done": jobs_done})
    r.zadd(keys.workers, {name: at_ms})


def test_the_leader_gives_a_fast_worker_its_full_prefetch_and_a_slow_one_the_floor(r: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    now_ms = int(r.time()[0]) * 1000
    fleet = Fleet(keys)
    for at_ms, fast_done, slow_done in ((now_ms, 0, 0), (now_ms + 2000, 3000, 4)):  # 1,500 and 2 jobs/s
        _beat(r, keys, "fast", at_ms, fast_done)
        _beat(r, keys, "slow", at_ms, slow_done)
        fleet.look(r, config_due=False, timeout_s=60)
    views = {view.name: view for view in fleet.workers(0, 16)}
    assert (views["fast"].prefetch, views["slow"].prefetch) == (16, PREFETCH_FLOOR)
    assert (views["fast"].free, views["slow"].free) == (2 + 16, 2 + PREFETCH_FLOOR)
    assert {view.name: view.prefetch for view in fleet.workers(0, 0)} == {"fast": 0, "slow": 0}
