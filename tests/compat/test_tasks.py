"""Celery-style ``@task``: in-process calls, ``.delay`` and ``.apply_async`` on real workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import jobbalancer.client
from jobbalancer import Client, InvalidJob, Status
from jobbalancer.compat.rq import Queue
from jobbalancer.tasks import task
from tests.compat.tasks_app import add, flaky, whoami
from tests.e2e.conftest import Cluster


@pytest.fixture
def default_client(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Client:
    """Tasks use the module-level client; point it at this test's cluster."""
    monkeypatch.setattr(jobbalancer.client, "_default_client", cluster.client)
    return cluster.client


def test_calling_a_task_runs_it_here_and_it_keeps_its_name() -> None:
    assert add(2, 3) == 5
    assert whoami() == ""
    assert (add.__name__, add.name, add.__doc__) == ("add", "tests.compat.tasks_app:add", None)
    assert add.options == {"watchdog": 30, "retries": 3, "queue": "default", "priority": 0, "realtime": False}


def test_delay_and_apply_async_options(default_client: Client) -> None:
    job = add.delay(2, 3)
    record = job.record()
    assert (record.status, record.watchdog, record.retries, record.queue) == (Status.QUEUED, 30.0, 3, "default")
    assert record.spec == {"func": "tests.compat.tasks_app:add", "args": [2, 3], "kwargs": {}}
    custom = add.apply_async((1,), {"b": 2}, queue="other", priority=5, task_id="mine", time_limit=4)
    record = custom.record()
    assert (custom.id, record.queue, record.priority, record.watchdog) == ("mine", "other", 5, 4.0)
    assert record.spec["kwargs"] == {"b": 2}
    with pytest.raises(InvalidJob, match="apply_async option 'link' is not supported"):
        add.apply_async((1, 2), link="x")
    with pytest.raises(InvalidJob, match=r"argument 1 of tests.compat.tasks_app:add \(datetime"):
        add.delay(1, datetime.now(UTC))


def test_functions_without_an_import_path_cannot_be_tasks() -> None:
    with pytest.raises(InvalidJob, match="no importable path"):
        task(lambda: 1)

    def nested() -> None: ...

    with pytest.raises(InvalidJob, match="no importable path"):
        task(retries=1)(nested)


def test_tasks_run_on_workers_with_retries_and_dependencies(
    default_client: Client, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.balancer()
    cluster.worker("w1")
    job = add.delay(20, 22)
    assert job.result(timeout=20) == 42  # AsyncResult.get(timeout)
    own = whoami.delay()
    assert own.result(timeout=20) == own.id
    retried = flaky.delay(str(tmp_path / "attempts"))
    assert retried.result(timeout=30) == "ok after 3"
    assert retried.record().attempts == 3
    after = add.apply_async((1, 1), depends_on=[retried, job])
    assert after.result(timeout=20) == 2
    rq_job = Queue(connection=cluster.client.redis, prefix=cluster.prefix).enqueue(add, 5, 5)
    assert default_client.job(rq_job.id).result(timeout=20) == 10  # a task is a plain function to rq too


def test_countdown_and_eta_schedule_through_rq_scheduler(default_client: Client, scheduling: Cluster) -> None:
    later = add.apply_async((3, 4), countdown=1)
    assert later.status() is Status.SCHEDULED
    assert later.result(timeout=20) == 7
    at = add.apply_async((4, 4), eta=datetime.now(UTC) + timedelta(seconds=1))
    assert at.record().schedule is not None and at.result(timeout=20) == 8
