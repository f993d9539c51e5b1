"""How many jobs a worker slot takes next: doubling while its jobs are short, one after a slow one."""

from __future__ import annotations

from jobbalancer.worker.slots import MAX_TAKE, SHORT_JOB_S, next_take


def test_a_slot_takes_twice_as_many_while_its_jobs_are_short_up_to_the_cap() -> None:
    want, seen = 1, []
    for _ in range(8):
        want = next_take(want, SHORT_JOB_S / 10)
        seen.append(want)
    assert seen[:4] == [2, 4, 8, 16] and max(seen) == MAX_TAKE


def test_one_slow_batch_brings_the_slot_back_to_one_job_at_a_time() -> None:
    assert next_take(MAX_TAKE, SHORT_JOB_S * 2) == 1
    assert next_take(1, 5.0) == 1
