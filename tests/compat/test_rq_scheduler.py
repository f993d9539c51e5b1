"""rq-scheduler's documented examples, unchanged but for ``queue_class``, on jobbalancer workers."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import redis
from rq_scheduler import Scheduler

from jobbalancer import Status
from tests.compat import rq_funcs
from tests.compat.conftest import wait_status
from tests.e2e.conftest import Cluster
from tests.helpers import wait_for


def make_scheduler(raw: redis.Redis) -> Scheduler:
    return Scheduler(queue_class="jobbalancer.compat.rq.Queue", connection=raw)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def fast_forward(raw: redis.Redis, rq_id: str, to: float) -> None:
    """Make an entry due now, as if its time ``to`` (a past minute, for a cron entry) had come.

    Runs of a repeating entry are named by their due second, so each fast-forward needs its own.
    """
    assert to <= time.time()
    raw.zadd(Scheduler.scheduled_jobs_key, {rq_id: to})


def test_enqueue_at_and_enqueue_in_run_on_jobbalancer_workers(
    scheduling: Cluster, raw: redis.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    scheduler = make_scheduler(raw)
    past = scheduler.enqueue_at(datetime(2020, 1, 1), rq_funcs.stamp, str(out), "at")
    soon = scheduler.enqueue_in(timedelta(seconds=1), rq_funcs.stamp, str(out), label="in")
    assert soon in scheduler
    wait_status(scheduling, past.id, Status.SUCCEEDED)
    record = scheduling.client.record(past.id)
    assert record.spec == {"func": "tests.compat.rq_funcs:stamp", "args": [str(out), "at"], "kwargs": {}}
    assert record.watchdog == 180.0  # rq's default timeout, as an rq worker would apply it
    wait_status(scheduling, soon.id, Status.SUCCEEDED)
    assert scheduling.client.record(soon.id).result == "in"
    assert sorted(lines(out)) == ["at", "in"]
    assert soon not in scheduler and list(scheduler.get_jobs()) == []
    assert not raw.exists(past.key)  # handed over: rq-scheduler's copy is gone


def test_schedule_with_interval_and_repeat_runs_that_many_times(
    scheduling: Cluster, raw: redis.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    entry = make_scheduler(raw).schedule(
        scheduled_time=datetime.utcnow(),  # noqa: DTZ003 - rq-scheduler's own example reads so
        func=rq_funcs.stamp,
        args=[str(out)],
        kwargs={"label": "tick"},
        interval=1,
        repeat=3,
        meta={"foo": "bar"},
    )
    wait_for(lambda: len(lines(out)) == 3, 20, what="three runs")
    runs = [rec for rec in scheduling.client.jobs() if rec.id.startswith(entry.id + "@")]
    wait_for(lambda: all(scheduling.client.record(r.id).status is Status.SUCCEEDED for r in runs), 10, what="all done")
    assert len(runs) == 3 and len({run.id for run in runs}) == 3
    wait_for(lambda: raw.zscore(Scheduler.scheduled_jobs_key, entry.id) is None, 5, what="schedule exhausted")
    assert lines(out) == ["tick"] * 3


def test_cron_runs_when_due_and_is_filed_again_for_its_next_time(
    scheduling: Cluster, raw: redis.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    scheduler = make_scheduler(raw)
    entry = scheduler.cron("* * * * *", func=rq_funcs.stamp, args=[str(out), "cron"], repeat=2, queue_name="default")
    first_due = raw.zscore(Scheduler.scheduled_jobs_key, entry.id)
    assert first_due is not None and first_due % 60 == 0
    fast_forward(raw, entry.id, first_due - 120)
    wait_for(lambda: lines(out) == ["cron"], 20, what="the first cron run")
    next_due = wait_for(lambda: raw.zscore(Scheduler.scheduled_jobs_key, entry.id), 5, what="filed again")
    assert next_due % 60 == 0 and next_due > time.time()
    fast_forward(raw, entry.id, next_due - 60)
    wait_for(lambda: lines(out) == ["cron", "cron"], 20, what="the second cron run")
    wait_for(lambda: raw.zscore(Scheduler.scheduled_jobs_key, entry.id) is None, 5, what="repeat=2 exhausted")
    runs = sorted(rec.id for rec in scheduling.client.jobs() if rec.id.startswith(entry.id + "@"))
    assert runs == [f"{entry.id}@{first_due - 120:.0f}", f"{entry.id}@{next_due - 60:.0f}"]


def test_a_cancelled_entry_never_runs(scheduling: Cluster, raw: redis.Redis, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    scheduler = make_scheduler(raw)
    dropped = scheduler.enqueue_in(timedelta(seconds=1), rq_funcs.stamp, str(out), "dropped")
    later = scheduler.enqueue_in(timedelta(seconds=2), rq_funcs.stamp, str(out), "later")
    scheduler.cancel(dropped)
    assert dropped not in scheduler
    wait_status(scheduling, later.id, Status.SUCCEEDED)
    assert lines(out) == ["later"]


def test_an_entry_jobbalancer_cannot_carry_is_dead_lettered_and_the_loop_goes_on(
    scheduling: Cluster, raw: redis.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "ran"
    scheduler = make_scheduler(raw)
    bad = scheduler.enqueue_at(datetime(2020, 1, 1), rq_funcs.stamp, str(out), {1, 2})  # rq pickles a set
    good = scheduler.enqueue_at(datetime(2020, 1, 1), rq_funcs.stamp, str(out), "good")
    wait_status(scheduling, good.id, Status.SUCCEEDED)
    dead = wait_for(lambda: scheduling.client.redis.xrange(f"{scheduling.prefix}:dead"), 5, what="a dead letter")
    assert dead[0][1]["id"] == bad.id and "argument 1 of tests.compat.rq_funcs:stamp (set" in dead[0][1]["reason"]
    assert bad not in scheduler
    assert "taken off the schedule" in scheduling.log("scheduler")
