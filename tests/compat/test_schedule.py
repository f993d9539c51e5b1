"""Native scheduling (``jb submit --in/--at/--cron``, ``delay=``/``at=``/``cron=``, ``jb schedule``),
filed with rq-scheduler and run by ``jb scheduler`` or the leading ``jb balancer --scheduler``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from rq_scheduler import Scheduler

from jobbalancer import Status
from tests.compat import rq_funcs
from tests.compat.conftest import SCHEDULER_INTERVAL_S, wait_status
from tests.e2e.conftest import Cluster
from tests.helpers import REPO, wait_for


def test_submit_in_keeps_one_id_from_scheduled_to_run(scheduling: Cluster) -> None:
    # long enough for three `jb` processes to start on a busy machine before it is due
    submitted = scheduling.jb("submit", "echo $JB_JOB_ID", "--in", "6s")
    job_id = submitted.stdout.strip()
    assert submitted.returncode == 0 and len(job_id) == 32
    status = json.loads(scheduling.jb("status", job_id, "--json").stdout)
    assert (status["status"], status["schedule"]) == ("scheduled", "in 6s")
    assert status["due_at"] >= status["created_at"] + 6
    assert "scheduled" in scheduling.jb("status", job_id).stdout
    listed = json.loads(scheduling.jb("schedule", "list", "--json").stdout)
    assert [(e["id"], e["schedule"], e["what"]) for e in listed] == [(job_id, "once", "echo $JB_JOB_ID")]
    record = scheduling.client.job(job_id).wait(20)
    assert (record.status, record.stdout) == (Status.SUCCEEDED, f"{job_id}\n")
    assert record.started_at is not None and record.started_at >= status["due_at"]
    assert json.loads(scheduling.jb("schedule", "list", "--json").stdout) == []


def test_submit_at_with_wait_streams_the_run(scheduling: Cluster) -> None:
    moment = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="seconds")
    done = scheduling.jb("submit", "echo on time", "--at", moment, "--wait")
    assert (done.returncode, done.stdout) == (0, "on time\n")
    bad = scheduling.jb("submit", "true", "--at", "next tuesday")
    assert bad.returncode == 2 and "is not ISO 8601" in bad.stderr
    both = scheduling.jb("submit", "true", "--in", "5s", "--cron", "* * * * *")
    assert both.returncode == 2 and "not delay and cron" in both.stderr
    forever = scheduling.jb("submit", "true", "--cron", "* * * * *", "--wait")
    assert forever.returncode == 2 and "--wait cannot wait for a cron schedule" in forever.stderr


def test_client_delay_at_and_enqueue_call(scheduling: Cluster) -> None:
    client = scheduling.client
    job = client.enqueue_call("tasks:add", (2, 3), delay=timedelta(seconds=1), id="add-later")
    assert job.id == "add-later" and job.status() is Status.SCHEDULED
    assert job.result(timeout=20) == 5
    past = client.submit("echo past", at=time.time() - 60)
    assert past.result(timeout=20) == "past\n"


def test_cron_job_runs_under_dated_ids_until_cancelled(scheduling: Cluster, raw: redis.Redis) -> None:
    template = scheduling.jb("submit", "echo tick", "--cron", "* * * * *", "--id", "ticker").stdout.strip()
    assert template == "ticker"
    assert scheduling.client.record("ticker").schedule == "cron * * * * *"
    raw.zadd(Scheduler.scheduled_jobs_key, {"ticker": time.time() - 1})  # its minute has come
    run = wait_for(lambda: [r for r in scheduling.client.jobs() if r.id.startswith("ticker@")], 20, what="a run")[0]
    assert run.id == f"ticker@{run.id.split('@')[1]}" and int(run.id.split("@")[1]) <= time.time()
    assert scheduling.client.job(run.id).result(timeout=20) == "tick\n"
    assert scheduling.client.record("ticker").status is Status.SCHEDULED  # the schedule goes on
    next_due = wait_for(lambda: raw.zscore(Scheduler.scheduled_jobs_key, "ticker"), 5, what="filed again")
    assert next_due > time.time()
    cancelled = scheduling.jb("schedule", "cancel", "ticker")
    assert cancelled.stdout.strip() == "ticker: cancelled"
    assert scheduling.client.record("ticker").status is Status.CANCELLED
    assert raw.zscore(Scheduler.scheduled_jobs_key, "ticker") is None and not raw.exists("rq:job:ticker")


def test_cancel_before_due_and_unknown_ids(scheduling: Cluster, raw: redis.Redis) -> None:
    job_id = scheduling.jb("submit", "echo never", "--in", "1h").stdout.strip()
    assert scheduling.jb("cancel", job_id).stdout.strip() == f"{job_id}: cancelled"
    record = scheduling.client.record(job_id)
    assert (record.status, record.error) == (Status.CANCELLED, "cancelled before it was due")
    assert raw.zcard(Scheduler.scheduled_jobs_key) == 0
    again = scheduling.jb("schedule", "cancel", job_id)
    assert again.returncode == 1 and "is cancelled, not scheduled" in again.stderr
    missing = scheduling.jb("schedule", "cancel", "no-such")
    assert missing.returncode == 1 and "no job with id 'no-such'" in missing.stderr


def test_a_scheduled_job_with_dependencies_is_refused(scheduling: Cluster) -> None:
    first = scheduling.client.submit("true")
    refused = scheduling.jb("submit", "true", "--in", "5s", "--after", first.id)
    assert refused.returncode == 2 and "cannot also wait for other jobs" in refused.stderr


def test_balancer_scheduler_runs_only_while_leading_and_fails_over(cluster: Cluster, raw: redis.Redis) -> None:
    cluster.worker("w1")
    leader_key = f"{cluster.prefix}:leader"
    cluster.client.redis.set(leader_key, "999:somebody-else", px=60_000)  # a leader we do not run
    cluster.balancer("b1", "--scheduler", "--scheduler-interval", SCHEDULER_INTERVAL_S)
    cluster.balancer("b2", "--scheduler", "--scheduler-interval", SCHEDULER_INTERVAL_S)
    job = cluster.client.submit("echo led", delay=0.5)
    due = cluster.client.record(job.id).due_at or 0
    wait_for(lambda: time.time() > due + 1.5, 5, what="well past due")
    assert job.status() is Status.SCHEDULED  # no balancer leads: neither scheduler thread acts
    cluster.client.redis.delete(leader_key)
    assert job.result(timeout=20) == "led\n"
    leader = wait_for(lambda: cluster.client.redis.get(leader_key), 10, what="a leader")
    first = "b1" if leader.endswith(":b1") else "b2"
    cluster.procs[first].terminate()
    cluster.procs[first].wait(15)
    again = cluster.client.submit("echo failed over", delay=0.5)
    assert again.result(timeout=30) == "failed over\n"
    assert cluster.client.redis.get(leader_key).endswith(":b2" if first == "b1" else ":b1")
    wait_status(cluster, again.id, Status.SUCCEEDED)


def test_schedule_list_and_cancel_cover_rq_scheduler_users_entries(cluster: Cluster, raw: redis.Redis) -> None:
    ours = Scheduler(queue_class="jobbalancer.compat.rq.Queue", connection=raw)
    entry = ours.enqueue_in(timedelta(hours=1), rq_funcs.count_words, "a b")
    stock = Scheduler(connection=raw).enqueue_in(timedelta(hours=1), rq_funcs.count_words, "for rq's own workers")
    listed = json.loads(cluster.jb("schedule", "list", "--json").stdout)
    assert [(e["id"], e["schedule"], e["what"]) for e in listed] == [
        (entry.id, "once", "tests.compat.rq_funcs.count_words('a b')")
    ]
    assert entry.id in cluster.jb("schedule", "list").stdout
    removed = cluster.jb("schedule", "cancel", entry.id)
    assert removed.stdout.strip() == f"{entry.id}: removed from rq-scheduler's schedule"
    assert entry not in ours and stock in ours


def test_jb_up_runs_scheduled_jobs(redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "jobbalancer", "--redis", redis_url, "--prefix", prefix]
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [*base, "up", "--workers", "1", "--concurrency", "1", "--no-web"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            later = subprocess.run([*base, "submit", "echo later", "--in", "1s", "--wait"], capture_output=True,
                                   text=True, timeout=60)  # fmt: skip
            assert (later.returncode, later.stdout) == (0, "later\n"), later.stderr
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(40)
