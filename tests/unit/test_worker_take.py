"""How many jobs a worker slot takes next (doubling while its jobs are short, one after a slow one),
and how a refill shares the jobs it took among the free slots."""

from __future__ import annotations

from jobbalancer.worker.running import Assignment
from jobbalancer.worker.slots import MAX_TAKE, SHORT_JOB_S, next_take, share


def test_a_slot_takes_twice_as_many_while_its_jobs_are_short_up_to_the_cap() -> None:
    want, seen = 1, []
    for _ in range(8):
        want = next_take(want, SHORT_JOB_S / 10)
        seen.append(want)
    assert seen[:4] == [2, 4, 8, 16] and max(seen) == MAX_TAKE


def test_one_slow_batch_brings_the_slot_back_to_one_job_at_a_time() -> None:
    assert next_take(MAX_TAKE, SHORT_JOB_S * 2) == 1
    assert next_take(1, 5.0) == 1


def _jobs(n: int) -> list[Assignment]:
    return [Assignment(f"{i}-0", f"j{i}", "1", "call", "{}", None) for i in range(n)]


def test_a_refill_gives_every_free_slot_a_job_before_any_slot_gets_two() -> None:
    jobs = _jobs(3)
    assert share(jobs, 8) == [[job] for job in jobs]
    assert share([], 4) == []


def test_a_refill_with_more_jobs_than_free_slots_splits_them_in_order_into_even_batches() -> None:
    jobs = _jobs(7)
    batches = share(jobs, 3)
    assert [len(batch) for batch in batches] == [3, 2, 2]
    assert [job for batch in batches for job in batch] == jobs
