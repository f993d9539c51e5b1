"""The dashboard user of ``conf/acl`` follows a job's live output (``jb logs -f``, the web page's SSE)
and waits for jobs, reading only: it still cannot write, submit or cancel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from jobbalancer import Client, Status
from jobbalancer.web import create_app
from tests.helpers import wait_for
from tests.security.servers import Processes, SecureRedis

TOKEN = "dashboard-token-0123456789"
LINES = "for i in 1 2 3 4; do echo line$i; sleep 0.4; done; echo oops >&2"


@pytest.fixture
def cluster(acl_redis: SecureRedis, tmp_path: Path) -> Iterator[tuple[Processes, Client]]:
    procs = Processes(tmp_path)
    procs.spawn("b1", acl_redis.url("balancer"), "balancer", "--name", "b1")
    procs.spawn("w1", acl_redis.url("worker"), "worker", "--name", "w1", "--concurrency", "2")
    client = Client(acl_redis.url("client"))
    try:
        wait_for(lambda: client.workers(), 20, what="w1 registered under the worker user")
        yield procs, client
    finally:
        client.close()
        procs.stop()


def _running(client: Client) -> str:
    job = client.submit(LINES)
    wait_for(lambda: job.status() is Status.RUNNING, 20, what="the job running")
    return job.id


def test_the_dashboard_user_follows_live_output_and_waits(
    acl_redis: SecureRedis, cluster: tuple[Processes, Client]
) -> None:
    procs, client = cluster
    job_id = _running(client)
    followed = procs.jb(acl_redis.url("dashboard"), "logs", "-f", job_id)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "line1\nline2\nline3\nline4\n" and followed.stderr == "oops\n"
    second = _running(client)
    dashboard = Client(acl_redis.url("dashboard"))
    try:
        chunks = [chunk.data for chunk in dashboard.follow(second)]
        assert "".join(chunks) == "line1\nline2\nline3\nline4\noops\n"
        assert dashboard.wait(second, 10).status is Status.SUCCEEDED
    finally:
        dashboard.close()


def test_the_dashboard_page_streams_output_under_the_dashboard_user(
    acl_redis: SecureRedis, cluster: tuple[Processes, Client]
) -> None:
    _procs, client = cluster
    job_id = _running(client)
    app = create_app(url=acl_redis.url("dashboard"), token=TOKEN, hosts={"testserver"})
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as web:
        with web.stream("GET", f"/api/jobs/{job_id}/logs", params={"follow": "true"}) as response:
            body = "".join(response.iter_text())
        assert response.status_code == 200
        assert 'event: stdout\ndata: "line4\\n"' in body and "event: end" in body and "event: error" not in body
        assert web.get(f"/api/jobs/{job_id}").json()["status"] == "succeeded"


def test_the_dashboard_user_still_only_reads(acl_redis: SecureRedis, cluster: tuple[Processes, Client]) -> None:
    procs, client = cluster
    job_id = _running(client)
    dashboard = redis.Redis.from_url(acl_redis.url("dashboard"), decode_responses=True)
    try:
        for write in (
            lambda: dashboard.xadd(f"jb:job:{job_id}:out", {"fd": "1", "data": "forged"}),
            lambda: dashboard.xadd("jb:inbox", {"id": "x", "queue": "default", "priority": "0", "realtime": "0"}),
            lambda: dashboard.hset(f"jb:job:{job_id}", "status", "succeeded"),
            lambda: dashboard.delete(f"jb:job:{job_id}"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
    finally:
        dashboard.close()
    refused = procs.jb(acl_redis.url("dashboard"), "cancel", job_id)
    assert refused.returncode == 1 and "permission" in refused.stderr.lower()
    assert client.wait(job_id, 20).status is Status.SUCCEEDED
