"""Scheduling (delay, at, cron) and dependencies (depends_on, after_any) through ``POST /api/jobs``,
and ``/api/schedules``: in-process against the real Redis, then one run on a real cluster."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobbalancer import Client
from tests.e2e.conftest import Cluster
from tests.helpers import wait_for
from tests.web.conftest import Live

NEW_YEAR_2030 = 1893456000  # 2030-01-01T00:00:00Z


def submit(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/api/jobs", json={"command": "echo later", **body})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def test_a_delayed_job_is_scheduled_listed_and_cancelled(api: TestClient, jb: Client) -> None:
    now = float(jb.redis.time()[0])
    job = submit(api, delay=120)
    assert (job["status"], job["schedule"]) == ("scheduled", "in 120s")
    assert now + 119 <= job["due_at"] <= now + 123

    listed = {entry["id"]: entry for entry in api.get("/api/schedules").json()}
    assert listed[job["id"]]["due_at"] == job["due_at"]
    assert (listed[job["id"]]["what"], listed[job["id"]]["queue"]) == ("echo later", "default")

    gone = api.delete(f"/api/schedules/{job['id']}")
    assert gone.status_code == 200 and gone.json() == {"id": job["id"], "outcome": "cancelled"}
    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
    assert job["id"] not in {entry["id"] for entry in api.get("/api/schedules").json()}
    again = api.delete(f"/api/schedules/{job['id']}")
    assert again.status_code == 409 and "not scheduled" in again.json()["detail"]
    assert api.delete("/api/schedules/no-such-job").status_code == 404


@pytest.mark.parametrize("at", ["2030-01-01T00:00:00Z", "2030-01-01T01:00:00+01:00", NEW_YEAR_2030])
def test_at_takes_iso_8601_or_epoch_seconds(api: TestClient, at: Any) -> None:
    job = submit(api, at=at)
    assert (job["status"], job["due_at"]) == ("scheduled", NEW_YEAR_2030)
    assert job["schedule"] == "at 2030-01-01T00:00:00+00:00"
    api.delete(f"/api/schedules/{job['id']}")


def test_a_cron_job_is_listed_with_its_expression(api: TestClient) -> None:
    job = submit(api, cron="*/5 * * * *", queue="nightly")
    assert (job["status"], job["schedule"]) == ("scheduled", "cron */5 * * * *")
    entry = next(e for e in api.get("/api/schedules").json() if e["id"] == job["id"])
    assert (entry["schedule"], entry["queue"]) == ("cron */5 * * * *", "nightly")
    assert api.delete(f"/api/schedules/{job['id']}").json()["outcome"] == "cancelled"


def test_a_dependent_job_waits_and_is_cancelled_with_its_dependency(api: TestClient) -> None:
    first = submit(api)
    second = api.post("/api/jobs", json={"argv": ["echo", "second"], "depends_on": [first["id"]]}).json()
    assert (second["status"], second["depends_on"], second["after"]) == ("queued", [first["id"]], "all")
    anyway = submit(api, depends_on=[first["id"]], after_any=True)
    assert anyway["after"] == "any"
    assert api.post(f"/api/jobs/{first['id']}/cancel").json()["outcome"] == "cancelled"
    cancelled = api.get(f"/api/jobs/{second['id']}").json()
    assert (cancelled["status"], cancelled["error"]) == ("cancelled", f"dependency {first['id']} cancelled")
    assert api.get(f"/api/jobs/{anyway['id']}").json()["status"] == "queued"  # after_any: it runs anyway


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"delay": -1}, "delay", "greater than or equal to 0"),
        ({"delay": "soon"}, "delay", "valid number"),
        ({"at": "tomorrow"}, "at", "is not ISO 8601"),
        ({"at": True}, "at", "epoch seconds or an ISO 8601 moment"),
        ({"at": "1969-07-20T20:17:00Z"}, "at", "between 1970 and 9999"),
        ({"cron": "every minute"}, "cron", "is not valid"),
        ({"cron": "0 0 30 2 *"}, "cron", "never fires"),
        ({"delay": 5, "at": NEW_YEAR_2030}, "at", "give one of delay, at and cron, not delay and at"),
        ({"cron": "* * * * *", "delay": 5}, "cron", "not delay and cron"),
        ({"delay": 5, "depends_on": ["x1"]}, "depends_on", "a scheduled job cannot also wait for other jobs"),
        ({"depends_on": ["never-submitted"]}, "depends_on", "which does not exist"),
        ({"depends_on": ["not an id"]}, "depends_on", "should match pattern"),
        ({"after_any": True}, "after_any", "after_any needs depends_on"),
    ],
)
def test_invalid_scheduling_is_refused_naming_the_field(
    api: TestClient, jb: Client, body: dict[str, Any], field: str, words: str
) -> None:
    if body.get("depends_on") == ["x1"]:
        jb.submit("true", id="x1")  # an existing job: the refusal is about combining, not about the id
    response = api.post("/api/jobs", json={"command": "echo never", **body})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert words in response.json()["detail"]
    assert not [entry for entry in api.get("/api/schedules").json() if entry["what"] == "echo never"]


def test_scheduled_and_dependent_jobs_run_on_a_cluster(live: Live, cluster: Cluster) -> None:
    cluster.balancer("b1", "--scheduler", "--scheduler-interval", "0.2")
    cluster.worker("w1")
    delayed = live.client.post("/api/jobs", json={"command": "echo delayed", "delay": 1}).json()
    first = live.client.post("/api/jobs", json={"command": "echo first"}).json()
    then = live.client.post("/api/jobs", json={"command": "echo then", "depends_on": [first["id"]]}).json()

    def done(job_id: str) -> dict[str, Any] | None:
        job: dict[str, Any] = live.client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] == "succeeded" else None

    ran = wait_for(lambda: done(delayed["id"]), 30, what="the delayed job to run")
    assert ran["stdout"] == "delayed\n" and ran["started_at"] >= delayed["created_at"] + 1
    after = wait_for(lambda: done(then["id"]), 30, what="the dependent job to run")
    assert after["started_at"] >= live.client.get(f"/api/jobs/{first['id']}").json()["finished_at"]
