"""take.lua recording a slot's batch at once: what each outcome leaves must match one-by-one recording."""

from __future__ import annotations

import redis

from jobbalancer.balancer.apply import apply_ops
from jobbalancer.job import Options, Spec, submit_argv
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts
from jobbalancer.views import job_events


def placed_and_started(r: redis.Redis, scripts: Scripts, keys: Keys, options: list[Options]) -> list[list[str]]:
    """Submit one job per options, assign them all to worker w1 and take them: (id, attempt, entry) each."""
    scripts.heartbeat(keys.prefix, "w1", 60_000, "queues", "default")
    r.xgroup_create(keys.worker_jobs("w1"), "worker", id="0", mkstream=True)
    token = scripts.lease(keys.prefix, "b1", 60_000, "", "hold")
    for i, opts in enumerate(options):
        scripts.submit(keys.prefix, *submit_argv(f"j{i}", Spec.for_command("true"), opts))
    inbox: list[tuple[str, dict[str, str]]] = r.xrange(keys.inbox)  # type: ignore[assignment]
    ops = [{"o": "a", "id": f["id"], "w": "w1", "e": e} for e, f in inbox]
    assert apply_ops(r, scripts, keys, token, ops) == [1] * len(options)
    _codes, flat, last = scripts.take(keys.prefix, "w1", len(options))
    assert last == r.xrevrange(keys.worker_jobs("w1"), count=1)[0][0]  # where the worker's next wait starts
    return [[flat[i + 1], flat[i + 2], flat[i]] for i in range(0, len(flat), 6)]


def finished(r: redis.Redis, keys: Keys, status: str) -> int:
    """Jobs of queue default counted as finished with ``status`` in <p>:stats (all duration buckets)."""
    stats: dict[str, str] = r.hgetall(keys.stats)  # type: ignore[assignment]
    return sum(int(n) for field, n in stats.items() if field.startswith(f"default|{status}|") and field[-3:] != "|ms")


def test_a_batch_of_outcomes_frees_each_slot_and_counts_each_job_as_one_by_one(r: redis.Redis, prefix: str) -> None:
    scripts, keys = Scripts(r), Keys(prefix)
    jobs = placed_and_started(r, scripts, keys, [Options(), Options(watchdog_s=60), Options(), Options(retries=1)])
    assert r.zscore(keys.deadlines, "j1") is not None  # the watchdog's deadline, while it runs
    outcomes = [
        [*jobs[0], "succeeded", "0", "", "", "", ""],
        [*jobs[1], "succeeded", "0", "", "", "", ""],
        [*jobs[2], "failed", "1", "boom", "", "", ""],
        [*jobs[3], "failed", "1", "flaky", "", "", ""],  # a retry left: re-queued, not finished
        ["j0", jobs[0][1], jobs[0][2], "succeeded", "0", "", "", "", ""],  # a repeat: fenced out
    ]
    codes, taken, delivered = scripts.take(prefix, "w1", 1, *[field for outcome in outcomes for field in outcome])

    assert codes == [1, 1, 1, 2, 0] and taken == []
    assert delivered == jobs[3][2]  # nothing new: where the worker's idle wait starts from
    assert [r.hget(keys.job(f"j{i}"), "status") for i in range(4)] == ["succeeded", "succeeded", "failed", "queued"]
    assert r.xlen(keys.worker_jobs("w1")) == 0 and r.hget(keys.freed, "w1") == "4"  # each slot freed once
    assert r.zscore(keys.deadlines, "j1") is None
    assert [finished(r, keys, status) for status in ("succeeded", "failed")] == [2, 1]  # as /metrics counts
    assert r.hget(f"{prefix}:w:w1", "jobs_done") == "4"
    events: list[tuple[str, dict[str, str]]] = r.xrange(keys.events)  # type: ignore[assignment]
    statuses = [(f["id"], f["status"]) for _e, f in job_events(events)]
    for i, last in enumerate(["succeeded", "succeeded", "failed", "queued"]):
        assert [s for job, s in statuses if job == f"j{i}"] == ["queued", "assigned", "running", last]


def test_each_job_of_a_batch_gets_its_own_record_times_and_the_batch_one_clock(r: redis.Redis, prefix: str) -> None:
    scripts, keys = Scripts(r), Keys(prefix)
    jobs = placed_and_started(r, scripts, keys, [Options(), Options()])
    outcomes = [field for job in jobs for field in [*job, "succeeded", "0", "", "", "", ""]]
    assert scripts.take(prefix, "w1", 0, *outcomes)[0] == [1, 1]
    records = [r.hgetall(keys.job(f"j{i}")) for i in range(2)]
    assert records[0]["finished_at"] == records[1]["finished_at"]  # one script call, one instant
    assert all(float(rec["finished_at"]) >= float(rec["started_at"]) for rec in records)
    assert all("entry" not in rec and "seq" not in rec for rec in records)
