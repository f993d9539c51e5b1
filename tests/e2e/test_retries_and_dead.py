"""Retries with backoff (per job and per queue), and the dead letters with `jb dead`."""

from __future__ import annotations

import json
from pathlib import Path

from jobbalancer import Status
from jobbalancer.dead import dead_letters
from tests.e2e.conftest import Cluster
from tests.helpers import wait_for


def _starts(ledger: Path) -> list[float]:
    return [float(line.split()[1]) for line in ledger.read_text().splitlines()]


def test_retries_back_off_exponentially_then_the_job_is_dead_lettered(running: Cluster, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    job = running.client.submit(
        f"echo $JB_ATTEMPT $(date +%s.%N) >> {ledger}; exit 3", retries=2, backoff=1.0, backoff_max=10
    )
    wait_for(lambda: running.client.redis.zscore(f"{running.prefix}:delayed", job.id), 20, what="a delayed retry")
    assert running.client.redis.hget(f"{running.prefix}:job:{job.id}", "status") == "queued"
    record = job.wait(30)
    assert (record.status, record.attempts, record.exit_code) == (Status.FAILED, 3, 3)
    first, second, third = _starts(ledger)
    # The n-th retry waits between half and all of backoff * 2^(n-1): [0.5, 1] s, then [1, 2] s.
    assert 0.5 <= second - first <= 1.0 + 1.5
    assert 1.0 <= third - second <= 2.0 + 1.5
    (letter,) = dead_letters(running.client)
    assert letter.job_id == job.id and letter.reason == "failed after 2 retries: exit code 3"

    listed = running.jb("dead", "list")
    assert listed.returncode == 0 and job.id in listed.stdout
    assert json.loads(running.jb("dead", "list", "--json").stdout) == [letter.to_dict()]
    shown = json.loads(running.jb("dead", "show", job.id, "--json").stdout)
    assert shown["record"]["status"] == "failed" and shown["letters"][0]["reason"] == letter.reason


def test_dead_job_retried_from_the_cli_runs_again_and_leaves_the_dead_letters(running: Cluster, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    job = running.client.submit(f"test -f {flag}", retries=1)
    assert job.wait(20).status is Status.FAILED
    wait_for(lambda: dead_letters(running.client), 5, what="the dead letter")
    flag.touch()  # the cause is fixed: run it again
    retried = running.jb("dead", "retry", job.id)
    assert (retried.returncode, retried.stdout.strip()) == (0, f"{job.id}: queued again")
    record = job.wait(20)
    assert (record.status, record.attempts) == (Status.SUCCEEDED, 3)
    assert dead_letters(running.client) == []
    again = running.jb("dead", "retry", job.id)
    assert again.returncode == 1 and f"no job with id '{job.id}'" in again.stderr


def test_queue_retry_defaults_apply_to_jobs_that_set_none(cluster: Cluster, tmp_path: Path) -> None:
    cluster.balancer()
    cluster.worker("w1", 2, "--queue", "flaky")
    shown = cluster.jb("retries", "flaky", "--retries", "2", "--backoff", "0.2")
    assert shown.stdout.strip() == "flaky: retries 2, backoff 0.2 s (at most 300 s)"
    defaulted = cluster.client.submit("exit 1", queue="flaky")
    own = cluster.client.submit("exit 1", queue="flaky", retries=1)
    assert (defaulted.wait(20).attempts, own.wait(20).attempts) == (3, 2)
    bad = cluster.jb("retries", "flaky", "--backoff", "-1")
    assert bad.returncode == 2 and "backoff must be from 0" in bad.stderr


def test_a_retry_waiting_out_its_backoff_can_be_cancelled(running: Cluster) -> None:
    job = running.client.submit("exit 1", retries=3, backoff=30)
    wait_for(lambda: running.client.redis.zscore(f"{running.prefix}:delayed", job.id), 20, what="a delayed retry")
    assert job.cancel() == "cancelled"
    record = job.wait(5)
    assert (record.status, record.attempts) == (Status.CANCELLED, 1)
    assert dead_letters(running.client) == []


def test_purge_deletes_dead_letters(running: Cluster) -> None:
    jobs = [running.client.submit("exit 2", retries=1) for _ in range(2)]
    for job in jobs:
        job.wait(20)
    wait_for(lambda: len(dead_letters(running.client)) == 2, 5, what="two dead letters")
    refused = running.jb("dead", "purge")
    assert refused.returncode == 2 and "--all" in refused.stderr
    assert running.jb("dead", "purge", jobs[0].id).stdout.strip() == "1 dead letter(s) deleted"
    assert running.jb("dead", "purge", "--all").stdout.strip() == "1 dead letter(s) deleted"
    assert dead_letters(running.client) == []
