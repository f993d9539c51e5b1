"""A worker slot takes short jobs in batches (take.lua) and records them together, without changing
what a user sees: every job recorded, started_at from its real start, its watchdog from then."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobbalancer.balancer.apply import encode_ops
from jobbalancer.job import Options, Record, Spec, Status, new_id, submit_argv
from jobbalancer.scripts import Scripts
from jobbalancer.worker import Worker, slots
from tests.helpers import wait_for

TASKS = """
import time


def noop():
    return True


def nap(seconds):
    time.sleep(seconds)
    return seconds
"""


def place_all(r: redis.Redis, prefix: str, worker: str, jobs: list[tuple[Spec, Options]]) -> list[str]:
    """Submit jobs and assign them all to ``worker`` in one dispatch.lua call, as a balancer pass would."""
    scripts = Scripts(r)
    ids, ops = [], []
    for spec, options in jobs:
        job_id = new_id()
        assert scripts.submit(prefix, *submit_argv(job_id, spec, options)) == [1]
        ids.append(job_id)
    entries = {fields["id"]: entry for entry, fields in r.xrange(f"{prefix}:inbox")}
    ops = [{"o": "a", "id": job_id, "w": worker, "e": entries[job_id]} for job_id in ids]
    with contextlib.suppress(redis.ResponseError):  # a balancer creates its group on start; none runs here
        r.xgroup_create(f"{prefix}:inbox", "balancers", id="0", mkstream=True)
    token = scripts.lease(prefix, "test", 600_000, "", "hold")
    assert scripts.dispatch(prefix, token, *encode_ops(ops)) == [1] * len(ids)
    return ids


def records(r: redis.Redis, prefix: str, ids: list[str], timeout: float = 20) -> list[Record]:
    def all_finished() -> list[Record] | None:
        recs = [Record.from_hash(i, r.hgetall(f"{prefix}:job:{i}")) for i in ids]
        return recs if all(rec.finished for rec in recs) else None

    return wait_for(all_finished, timeout, what=f"{len(ids)} jobs to end")


@pytest.fixture
def worker(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[tuple[Worker, list[int]]]:
    """A one-slot worker; the list holds how many outcomes each of its take.lua calls recorded."""
    (tmp_path / "batchtasks.py").write_text(TASKS)
    w = Worker(redis_url, prefix, name="w1", concurrency=1, heartbeat_s=0.2, paths=[str(tmp_path)])
    recorded: list[int] = []
    take = w._scripts.take

    def counting_take(*args: Any) -> Any:
        recorded.append((len(args) - 3) // 9)
        return take(*args)

    w._scripts.take = counting_take  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            w.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert w.wait_registered(10), errors
    yield w, recorded
    w.stop(graceful=False)
    thread.join(15)
    assert not thread.is_alive() and not errors


@pytest.fixture
def always_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch counts as short, so batches grow whatever the machine's load."""
    monkeypatch.setattr(slots, "SHORT_JOB_S", 60.0)


def test_short_jobs_are_taken_and_recorded_in_batches(
    r: redis.Redis, prefix: str, worker: tuple[Worker, list[int]], always_short: None
) -> None:
    _w, recorded = worker
    ids = place_all(r, prefix, "w1", [(Spec.for_call("batchtasks:noop"), Options())] * 30)
    recs = records(r, prefix, ids)
    assert all(rec.status is Status.SUCCEEDED and rec.result is True for rec in recs)
    assert all(rec.started_at and rec.finished_at and rec.started_at <= rec.finished_at for rec in recs)
    assert int(r.hget(f"{prefix}:w:w1", "jobs_done") or 0) == 30
    assert r.xlen(f"{prefix}:w:w1:jobs") == 0  # every entry acked and deleted
    assert max(recorded) > 1 and len([n for n in recorded if n]) < 30  # fewer round trips than jobs


def test_a_job_held_behind_a_slow_one_in_its_batch_gets_its_own_start_and_watchdog(
    r: redis.Redis, prefix: str, worker: tuple[Worker, list[int]], always_short: None
) -> None:
    _w, recorded = worker
    fast = [(Spec.for_call("batchtasks:noop"), Options())] * 7  # batches of 1, 2, 4: the next takes 8
    slow = (Spec.for_call("batchtasks:nap", args=(0.6,)), Options())
    after = (Spec.for_call("batchtasks:nap", args=(0.3,)), Options(watchdog_s=0.8))
    ids = place_all(r, prefix, "w1", [*fast, slow, after])
    recs = records(r, prefix, ids)
    held, late = recs[-2], recs[-1]
    assert [rec.status for rec in recs] == [Status.SUCCEEDED] * 9  # not timed out: 0.6 + 0.3 > 0.8
    assert held.started_at is not None and late.started_at is not None
    assert late.started_at >= held.started_at + 0.55  # from its real start, not its batch's
    assert max(recorded) >= 2


def test_cancelling_a_job_waiting_in_its_batch_ends_it_at_once(
    r: redis.Redis, prefix: str, worker: tuple[Worker, list[int]], always_short: None
) -> None:
    fast = [(Spec.for_call("batchtasks:noop"), Options())] * 7  # batches of 1, 2, 4: the next takes 8
    slow = (Spec.for_call("batchtasks:nap", args=(5,)), Options())
    victim = (Spec.for_call("batchtasks:nap", args=(0.1,)), Options())
    *_, slow_id, victim_id = place_all(r, prefix, "w1", [*fast, slow, victim])
    wait_for(lambda: r.hget(f"{prefix}:job:{victim_id}", "status") == "running", 10, what="the batch started")
    assert Scripts(r).cancel(prefix, victim_id) == "cancelling"
    (cancelled,) = records(r, prefix, [victim_id], timeout=3)  # not after the slow job's 5 s
    assert (cancelled.status, cancelled.exit_code) == (Status.CANCELLED, 130)
    assert r.hget(f"{prefix}:job:{slow_id}", "status") == "running"
    (done,) = records(r, prefix, [slow_id], timeout=15)
    assert done.status is Status.SUCCEEDED
