"""jobbalancer.compat.rq: what an rq Queue hands to jobbalancer, and what its jobs answer."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Dependency, JobStatus, Retry

from jobbalancer import Client, InvalidJob, Status
from jobbalancer.compat.rq import Job, Queue
from jobbalancer.job import PRIORITY_LIMIT
from tests.compat import rq_funcs
from tests.e2e.conftest import Cluster
from tests.helpers import REPO


@pytest.fixture
def queue(raw: redis.Redis, prefix: str) -> Queue:
    return Queue("default", connection=raw, prefix=prefix)


@pytest.fixture
def client(redis_url: str, prefix: str) -> Client:
    return Client(redis_url, prefix)


def test_enqueue_hands_function_arguments_and_options_over(queue: Queue, client: Client) -> None:
    job = queue.enqueue(
        rq_funcs.shout, "hi", suffix="?", job_id="j-1", job_timeout=30, retry=Retry(max=2), meta={"who": "me"}
    )
    assert isinstance(job, Job) and job.id == "j-1"
    record = client.record("j-1")
    assert record.spec == {"func": "tests.compat.rq_funcs:shout", "args": ["hi"], "kwargs": {"suffix": "?"}}
    assert (record.status, record.watchdog, record.retries, record.queue) == (Status.QUEUED, 30.0, 2, "default")
    assert json.loads(client.redis.hget(client.keys.job("j-1"), "meta") or "") == {"who": "me"}
    assert job.get_status() is JobStatus.QUEUED and job.is_queued
    assert (job.func_name, tuple(job.args), job.kwargs, job.meta) == (
        "tests.compat.rq_funcs.shout",
        ("hi",),
        {"suffix": "?"},
        {"who": "me"},
    )


def test_enqueue_call_defaults_and_rq_options(queue: Queue, client: Client) -> None:
    default = queue.enqueue_call("tests.compat.rq_funcs.count_words", args=("a b",), result_ttl=-1)
    assert client.record(default.id).watchdog == 180.0  # rq's default job timeout
    assert client.redis.hget(client.keys.job(default.id), "result_ttl") == "-1"
    endless = queue.enqueue(rq_funcs.count_words, "a", job_timeout=-1, at_front=True)
    assert client.record(endless.id).watchdog is None
    assert client.record(endless.id).priority == PRIORITY_LIMIT


def test_arguments_json_cannot_carry_are_refused_by_name(queue: Queue, client: Client) -> None:
    with pytest.raises(InvalidJob, match=r"argument 1 of tests.compat.rq_funcs:stamp \(datetime"):
        queue.enqueue(rq_funcs.stamp, "/tmp/x", datetime.now(UTC))
    with pytest.raises(InvalidJob, match=r"keyword argument 'label' of .* \(set"):
        queue.enqueue(rq_funcs.stamp, "/tmp/x", label={1})
    with pytest.raises(InvalidJob, match="meta of job"):
        queue.enqueue(rq_funcs.count_words, "a", meta={"when": datetime.now(UTC)})
    with pytest.raises(InvalidJob, match="method or a callable object"):
        queue.enqueue(rq_funcs.Counter().count, "abc")
    assert client.jobs() == []


def test_dependencies_map_to_jobbalancer_dependencies(queue: Queue, client: Client) -> None:
    first = queue.enqueue(rq_funcs.count_words, "a")
    second = queue.enqueue(rq_funcs.count_words, "b", depends_on=first)
    third = queue.enqueue(rq_funcs.count_words, "c", depends_on=Dependency(jobs=[first, second.id], allow_failure=True))
    assert client.record(second.id).depends_on == (first.id,)
    assert (client.record(third.id).depends_on, client.record(third.id).after) == ((first.id, second.id), "any")
    assert second.get_status() is JobStatus.DEFERRED
    first.cancel()
    assert first.get_status() is JobStatus.CANCELED and first.is_canceled
    assert second.get_status() is JobStatus.CANCELED


def test_unique_refuses_an_existing_id_and_fetch_reads_the_record(queue: Queue, raw: redis.Redis) -> None:
    queue.enqueue(rq_funcs.count_words, "a b c", job_id="once", unique=True)
    with pytest.raises(DuplicateJobError):
        queue.enqueue(rq_funcs.count_words, "x", job_id="once", unique=True)
    fetched = Job.fetch("once", connection=raw, prefix=queue.prefix)
    assert (fetched.func_name, fetched.args, fetched.get_status()) == (
        "tests.compat.rq_funcs.count_words",
        ["a b c"],
        JobStatus.QUEUED,
    )
    assert queue.fetch_job("once") is not None and queue.fetch_job("nope") is None
    with pytest.raises(NoSuchJobError):
        Job.fetch("nope", connection=raw, prefix=queue.prefix)


def test_enqueue_many_hands_every_job_over_in_order(queue: Queue, client: Client) -> None:
    datas = [
        Queue.prepare_data(rq_funcs.count_words, ("a b",), job_id="many-1", timeout=10),
        Queue.prepare_data(rq_funcs.shout, ("x",), {"suffix": "!"}, job_id="many-2", depends_on=["many-1"]),
    ]
    jobs = queue.enqueue_many(datas)
    assert [job.id for job in jobs] == ["many-1", "many-2"]
    assert client.record("many-1").watchdog == 10.0
    assert client.record("many-2").depends_on == ("many-1",)
    assert [job.get_status() for job in jobs] == [JobStatus.QUEUED, JobStatus.DEFERRED]


def test_enqueue_in_and_at_make_scheduled_jobs_with_their_own_id(queue: Queue, client: Client) -> None:
    later = queue.enqueue_in(timedelta(minutes=5), rq_funcs.count_words, "a b")
    record = client.record(later.id)
    assert record.status is Status.SCHEDULED and later.get_status() is JobStatus.SCHEDULED
    assert record.due_at is not None and record.due_at >= datetime.now(UTC).timestamp() + 290
    moment = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    fixed = queue.enqueue_at(moment, rq_funcs.count_words, "a", job_id="fixed")
    assert client.record(fixed.id).due_at == moment.timestamp()
    later.cancel()
    assert later.get_status() is JobStatus.CANCELED


def test_an_rq_program_runs_unchanged_but_for_its_import(cluster: Cluster, tmp_path: Path) -> None:
    cluster.balancer()
    cluster.worker("w1")
    original = (REPO / "tests/compat/rq_program.py").read_text()
    changed = original.replace("from rq import Queue\n", "from jobbalancer.compat.rq import Queue\n")
    assert [a for a, b in zip(original.splitlines(), changed.splitlines(), strict=True) if a != b] == [
        "from rq import Queue"
    ]
    program = tmp_path / "program.py"
    program.write_text(changed)
    env = {"REDIS_URL": cluster.url, "JB_PREFIX": cluster.prefix, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, env=env, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "words JobStatus.FINISHED 4",
        "loud loud-1 JobStatus.FINISHED HELLO? {'by': 'me'}",
        "after JobStatus.FINISHED AFTER!",
        "broken JobStatus.FAILED True",
    ]
    assert cluster.client.record("loud-1").status is Status.SUCCEEDED
    assert cluster.client.jobs(status="failed")[0].attempts == 2  # retry=Retry(max=1)
