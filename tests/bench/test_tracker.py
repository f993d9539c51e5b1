"""The benchmarks' tracker on a real cluster: it sees every job end, in submission order, with its times."""

from __future__ import annotations

import pytest

from jobbalancer.bench.follow import Tracker
from jobbalancer.bench.measure import throughput
from jobbalancer.job import Options, Spec
from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.slow


def test_the_tracker_reports_how_every_job_ended_in_submission_order(running: Cluster) -> None:
    client = running.client
    tracker = Tracker(client)
    items = [(Spec.for_call("tasks:noop"), Options())] * 300 + [(Spec.for_call("tasks:fail"), Options())]
    jobs = client.submit_many(items)
    tracker.add(job.id for job in jobs)
    tracker.wait(60)
    ends = tracker.ends()
    assert [end.id for end in ends] == [job.id for job in jobs] and tracker.finished == 301
    assert {end.status for end in ends[:300]} == {"succeeded"} and ends[300].status == "failed"
    assert all(0 < end.created_at <= end.finished_at for end in ends)
    # Jobs that had finished before a tracker began are not in the cluster's count since: found all the same.
    late = Tracker(client)
    late.add(job.id for job in jobs[:50])
    late.wait(30)
    assert [end.id for end in late.ends()] == [job.id for job in jobs[:50]]


def test_throughput_counts_every_job_and_names_one_that_failed(running: Cluster) -> None:
    measured = throughput(running.client, Spec.for_call("tasks:noop"), 200, "no-op")
    assert measured.jobs == 200 and measured.rate > 0 and measured.submit_rate >= measured.rate
    with pytest.raises(RuntimeError, match=r"1 failing jobs did not succeed; first: .*task failed on purpose"):
        throughput(running.client, Spec.for_call("tasks:fail"), 1, "failing")
