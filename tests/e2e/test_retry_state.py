"""An explicit ``retries 0`` beats a queue's default; ``jb status`` shows a retry waiting out its backoff."""

from __future__ import annotations

import json
import time

from jobbalancer import Status
from tests.e2e.conftest import Cluster
from tests.helpers import wait_for


def test_explicit_zero_retries_overrides_the_queue_default_from_the_cli_and_the_api(cluster: Cluster) -> None:
    cluster.balancer()
    cluster.worker("w1", 2, "--queue", "flaky")
    assert cluster.jb("retries", "flaky", "--retries", "2").returncode == 0
    cli_zero = cluster.jb("submit", "--queue", "flaky", "--retries", "0", "exit 1").stdout.strip()
    cli_default = cluster.jb("submit", "--queue", "flaky", "exit 1").stdout.strip()
    api_zero = cluster.client.submit("exit 1", queue="flaky", retries=0).id
    api_default = cluster.client.submit("exit 1", queue="flaky").id
    records = {job_id: cluster.client.wait(job_id, 30) for job_id in (cli_zero, cli_default, api_zero, api_default)}
    assert all(record.status is Status.FAILED for record in records.values())
    ran = {job_id: (record.retries, record.attempts) for job_id, record in records.items()}
    assert ran == {cli_zero: (0, 1), api_zero: (0, 1), cli_default: (2, 3), api_default: (2, 3)}


def test_status_shows_the_attempts_and_the_next_retry_of_a_job_waiting_out_its_backoff(cluster: Cluster) -> None:
    cluster.balancer()
    cluster.worker("w1", 1)
    job = cluster.client.submit("exit 1", retries=3, backoff=60)
    delayed = f"{cluster.prefix}:delayed"
    due_ms = wait_for(lambda: cluster.client.redis.zscore(delayed, job.id), 20, what="the retry to wait")

    shown = json.loads(cluster.jb("status", job.id, "--json").stdout)
    assert (shown["status"], shown["attempts"], shown["failures"], shown["retries"]) == ("queued", 1, 1, 3)
    assert shown["retry_at"] == due_ms / 1000 and shown["backoff"] == 60
    assert 30 <= shown["retry_at"] - time.time() <= 61  # the first retry waits half to all of 60 s

    lines = dict(line.split(None, 1) for line in cluster.jb("status", job.id).stdout.splitlines())
    assert (lines["status"], lines["attempts"], lines["failures"]) == ("queued", "1", "1")
    retry_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(due_ms / 1000))
    assert lines["retry_at"].startswith(retry_at) and lines["retries"] == "3"

    assert job.cancel() == "cancelled"  # a finished job shows no pending retry
    finished = json.loads(cluster.jb("status", job.id, "--json").stdout)
    assert "retry_at" not in finished and finished["failures"] == 1


def test_explicit_zero_backoff_overrides_the_queue_default_from_the_cli_and_the_api(cluster: Cluster) -> None:
    cluster.balancer()
    cluster.worker("w1", 2, "--queue", "slow")
    assert cluster.jb("retries", "slow", "--retries", "1", "--backoff", "60").returncode == 0
    cli_zero = cluster.jb("submit", "--queue", "slow", "--backoff", "0", "exit 1").stdout.strip()
    api_zero = cluster.client.submit("exit 1", queue="slow", backoff=0).id
    api_default = cluster.client.submit("exit 1", queue="slow").id
    for job_id in (cli_zero, api_zero):  # retried at once: both attempts spent, no wait in between
        record = cluster.client.wait(job_id, 30)
        assert (record.status, record.attempts, record.backoff) == (Status.FAILED, 2, None)
    delayed = f"{cluster.prefix}:delayed"
    wait_for(lambda: cluster.client.redis.zscore(delayed, api_default), 20, what="the default backoff to apply")
    assert json.loads(cluster.jb("status", api_default, "--json").stdout)["backoff"] == 60
    assert cluster.client.job(api_default).cancel() == "cancelled"
