"""``/metrics`` counters and the run time histogram, and ``/api/stats/history``, over a real cluster.

The counters live in Redis (``<p>:stats``), written by the Lua scripts as jobs finish, workers are
reclaimed and watchdogs fire; a scrape by any dashboard process reads the same numbers.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from jobbalancer import stats
from jobbalancer.job import Status
from tests.e2e.conftest import Cluster
from tests.helpers import REPO, wait_for
from tests.web.conftest import Live

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(live: Live) -> Samples:
    response = live.client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_the_lua_scripts_and_the_reader_agree_on_the_buckets() -> None:
    lua = (REPO / "jobbalancer" / "lua" / "_lib.lua").read_text()
    found = re.search(r"local DURATION_BUCKETS = \{(.*)\}", lua)
    assert found is not None
    assert tuple(re.findall(r"'([^']+)'", found.group(1))) == stats.DURATION_BUCKETS


def test_run_times_reclaims_and_watchdog_kills_are_counted(live: Live, cluster: Cluster, tmp_path: Path) -> None:
    cluster.balancer()
    victim = cluster.worker("w1", 2)
    wait_for(lambda: cluster.client.redis.xlen(f"{cluster.prefix}:stats:history"), 15, what="the first sample")
    quick = [cluster.client.submit(f"echo {i}") for i in range(3)]
    killed = cluster.client.submit("sleep 30", watchdog=0.5)
    assert all(job.wait(30).status is Status.SUCCEEDED for job in quick)
    assert killed.wait(30).status is Status.TIMED_OUT

    flag = tmp_path / "go"
    lost = cluster.client.submit(f"until [ -e {flag} ]; do sleep 0.05; done; echo survived", watchdog=60)
    wait_for(lambda: lost.status() is Status.RUNNING, 15, what="the long job running on w1")
    cluster.worker("w2", 1)
    victim.send_signal(signal.SIGKILL)  # its heartbeat stops; the balancer takes the job back for w2
    wait_for(lambda: lost.record().worker == "w2", 30, what="the job taken back from w1 and placed on w2")
    flag.touch()
    record = lost.wait(30)
    assert (record.status, record.worker, record.attempts, record.stdout) == (Status.SUCCEEDED, "w2", 2, "survived\n")

    samples = scrape(live)
    count = "jobbalancer_job_duration_seconds_count"
    assert value(samples, count, queue="default", status="succeeded") == 4
    assert value(samples, count, queue="default", status="timed_out") == 1
    bucket = "jobbalancer_job_duration_seconds_bucket"
    assert value(samples, bucket, queue="default", status="timed_out", le="0.25") == 0
    assert value(samples, bucket, queue="default", status="timed_out", le="5.0") == 1  # killed after 0.5 s
    assert value(samples, bucket, queue="default", status="succeeded", le="1.0") >= 3  # the echoes at least
    assert value(samples, bucket, queue="default", status="succeeded", le="+Inf") == 4
    assert 0 < value(samples, "jobbalancer_job_duration_seconds_sum", queue="default", status="succeeded") < 30
    assert 0.5 <= value(samples, "jobbalancer_job_duration_seconds_sum", queue="default", status="timed_out") < 5
    assert value(samples, "jobbalancer_jobs_finished_total", queue="default", status="succeeded") == 4
    assert value(samples, "jobbalancer_reclaimed_jobs_total", outcome="requeued") == 1
    assert value(samples, "jobbalancer_reclaimed_jobs_total", outcome="failed") == 0
    assert value(samples, "jobbalancer_watchdog_kills_total", by="worker") == 1
    assert value(samples, "jobbalancer_watchdog_kills_total", by="balancer") == 0

    def finished_in_history() -> int:
        points = live.client.get("/api/stats/history", params={"minutes": 5}).json()["points"]
        return sum(point["finished"] or 0 for point in points)

    # The balancer samples every 5 s; every job finished after its first sample.
    wait_for(lambda: finished_in_history() == 5, 15, what="the history to count the 5 finished jobs")


def test_jobs_that_never_ran_count_as_finished_without_a_run_time(live: Live, cluster: Cluster) -> None:
    job = cluster.client.submit("echo never")
    assert job.cancel() == "cancelled"
    samples = scrape(live)
    assert value(samples, "jobbalancer_jobs_finished_total", queue="default", status="cancelled") == 1
    assert (
        "jobbalancer_job_duration_seconds_count",
        frozenset({("queue", "default"), ("status", "cancelled")}),
    ) not in (samples)
