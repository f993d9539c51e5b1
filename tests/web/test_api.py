"""The HTTP API in-process against the real Redis: every route, every error path.

No balancer or worker runs here, so submitted jobs stay ``queued``; tests that need jobs to run
are in test_live.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobbalancer import Client
from tests.web.conftest import TOKEN


def submit(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/api/jobs", json={"command": "echo hi", **body})
    assert response.status_code == 201, response.text
    return response.json()


# -- security -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/jobs", "/api/workers", "/api/config", "/api/overview", "/metrics"])
def test_every_api_call_needs_the_bearer_token(api: TestClient, path: str) -> None:
    missing = api.get(path, headers={"Authorization": ""})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in missing.json()["detail"]
    wrong = api.get(path, headers={"Authorization": "Bearer not-the-token"})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "wrong bearer token")
    basic = api.get(path, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401


def test_writes_without_a_token_change_nothing(api: TestClient, jb: Client) -> None:
    response = api.post("/api/jobs", json={"command": "echo x"}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert jb.jobs() == []


def test_the_page_and_the_schema_need_no_token(api: TestClient) -> None:
    page = api.get("/", headers={"Authorization": ""})
    assert page.status_code == 200 and "<title>jobbalancer</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    script = api.get("/static/app.js", headers={"Authorization": ""})
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    schema = api.get("/openapi.json", headers={"Authorization": ""}).json()
    assert "/api/jobs" in schema["paths"] and schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", ""])
def test_unknown_host_headers_are_refused(api: TestClient, host: str) -> None:
    response = api.get("/api/config", headers={"Host": host})
    assert response.status_code == 400
    assert "unknown Host header" in response.json()["detail"]
    assert api.get("/", headers={"Host": host}).status_code == 400


def test_known_host_headers_with_ports_are_served(api: TestClient) -> None:
    for host in ("127.0.0.1:8080", "localhost:9", "testserver"):
        assert api.get("/api/config", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver:1234"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_origin_writes_are_refused(api: TestClient, jb: Client, headers: dict[str, str]) -> None:
    response = api.post("/api/jobs", json={"command": "echo x"}, headers=headers)
    assert response.status_code == 403
    assert response.json()["detail"] == "cross-origin writes are refused"
    assert api.patch("/api/config", json={"policy": "cpu"}, headers=headers).status_code == 403
    assert jb.jobs() == [] and jb.settings().policy == "least-loaded"


def test_same_origin_writes_are_served(api: TestClient) -> None:
    headers = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert api.post("/api/jobs", json={"command": "echo x"}, headers=headers).status_code == 201


def test_cross_origin_reads_get_no_cors_grant(api: TestClient) -> None:
    response = api.get("/api/config", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers  # the browser keeps the answer from the page


# -- jobs -----------------------------------------------------------------------------------------


def test_submit_a_command_returns_201_with_the_record(api: TestClient, jb: Client) -> None:
    body = {"command": "echo hi", "watchdog": 5, "queue": "q1", "retries": 2, "priority": 7, "id": "my-job"}
    response = api.post("/api/jobs", json={**body, "env": {"A": "1"}, "cwd": "/tmp"})
    assert response.status_code == 201
    job = response.json()
    assert job["id"] == "my-job" and job["status"] == "queued" and job["kind"] == "command"
    assert (job["command"], job["watchdog"], job["queue"]) == ("echo hi", 5, "q1")
    assert (job["retries"], job["priority"]) == (2, 7)
    assert job["env"] == {"A": "1"} and job["cwd"] == "/tmp"
    assert jb.record("my-job").spec["command"] == "echo hi"
    assert api.get("/api/jobs/my-job").json()["command"] == "echo hi"


def test_submit_a_call(api: TestClient, jb: Client) -> None:
    response = api.post("/api/jobs", json={"func": "workers.tasks:add", "args": [1, 2], "kwargs": {"c": 3}})
    assert response.status_code == 201
    job = response.json()
    assert (job["kind"], job["func"], job["args"], job["kwargs"]) == ("call", "workers.tasks:add", [1, 2], {"c": 3})
    assert jb.record(job["id"]).kind == "call"


def test_submit_a_program_with_its_arguments(api: TestClient, jb: Client) -> None:
    response = api.post("/api/jobs", json={"argv": ["echo", "x; touch /tmp/pwned"], "queue": "q2"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["kind"], job["argv"], job["queue"]) == ("command", ["echo", "x; touch /tmp/pwned"], "q2")
    assert jb.record(job["id"]).spec["argv"] == ["echo", "x; touch /tmp/pwned"]
    assert [j["id"] for j in api.get("/api/jobs", params={"q": "pwned"}).json()["jobs"]] == [job["id"]]


def test_an_existing_id_returns_that_job(api: TestClient) -> None:
    first = submit(api, id="same")
    again = api.post("/api/jobs", json={"command": "echo other", "id": "same"})
    assert again.status_code == 201 and again.json()["command"] == first["command"] == "echo hi"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "command"),
        ({"command": "echo", "func": "a:b"}, "command"),
        ({"command": "   "}, "command"),
        ({"command": 5}, "command"),
        ({"func": "not a path"}, "func"),
        ({"command": "x", "queue": "no spaces"}, "queue"),
        ({"command": "x", "retries": -1}, "retries"),
        ({"command": "x", "retries": 101}, "retries"),
        ({"command": "x", "watchdog": 0}, "watchdog"),
        ({"command": "x", "priority": 10**7}, "priority"),
        ({"command": "x", "id": "bad id/"}, "id"),
        ({"command": "x", "env": {"A": 1}}, "env"),
        ({"command": "x", "env": {"A=B": "1"}}, "env"),
        ({"command": "x", "realtime": "perhaps"}, "realtime"),
        ({"command": "x", "colour": "blue"}, "colour"),
        ({"func": "m:f", "args": "not a list"}, "args"),
        ({"command": "echo \u0000"}, "command"),
        ({"command": "x", "env": {"A": "\u0000"}}, "env"),
        ({"argv": []}, "argv"),
        ({"argv": ["", "x"]}, "argv"),
        ({"argv": "echo x"}, "argv"),
        ({"argv": ["echo"], "command": "echo"}, "command"),
    ],
)
def test_invalid_jobs_get_422_naming_the_field(api: TestClient, jb: Client, body: dict[str, Any], field: str) -> None:
    response = api.post("/api/jobs", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"] == field
    assert field in problem["detail"]
    assert jb.jobs() == []


def test_a_body_that_is_not_json_gets_422(api: TestClient) -> None:
    response = api.post("/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_unknown_jobs_get_404(api: TestClient) -> None:
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("GET", "/api/jobs/nope/logs"),
        ("GET", "/api/jobs/nope/logs?follow=true"),
        ("GET", "/api/jobs/nope/events"),
        ("POST", "/api/jobs/nope/cancel"),
        ("POST", "/api/jobs/nope/restart"),
        ("DELETE", "/api/jobs/nope"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"] == "no job with id 'nope'"


def test_cancel_restart_delete(api: TestClient, jb: Client) -> None:
    job = submit(api)
    conflict = api.delete(f"/api/jobs/{job['id']}")
    assert conflict.status_code == 409 and "cancel it first" in conflict.json()["detail"]
    assert api.post(f"/api/jobs/{job['id']}/restart").status_code == 409
    cancelled = api.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.json() == {"id": job["id"], "outcome": "cancelled"}
    assert api.get(f"/api/jobs/{job['id']}").json()["exit_code"] == 130
    restarted = api.post(f"/api/jobs/{job['id']}/restart")
    assert restarted.status_code == 200 and restarted.json()["status"] == "queued"
    api.post(f"/api/jobs/{job['id']}/cancel")
    deleted = api.delete(f"/api/jobs/{job['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get(f"/api/jobs/{job['id']}").status_code == 404


def test_logs_and_timeline_of_a_job(api: TestClient) -> None:
    job = submit(api)
    logs = api.get(f"/api/jobs/{job['id']}/logs").json()
    assert logs == {"id": job["id"], "status": "queued", "finished": False, "stdout": "", "stderr": ""}
    api.post(f"/api/jobs/{job['id']}/cancel")
    timeline = api.get(f"/api/jobs/{job['id']}/events").json()
    assert [event["status"] for event in timeline][-1] == "cancelled"
    assert timeline[-1]["job"] == job["id"] and timeline[-1]["at"] > 1e9
    # A finished job's follow replays its recorded output and ends at once.
    follow = api.get(f"/api/jobs/{job['id']}/logs?follow=true")
    assert follow.headers["content-type"].startswith("text/event-stream")
    assert 'event: end\ndata: {"status":"cancelled","exit_code":130' in follow.text


def test_list_pages_newest_first_with_a_cursor(api: TestClient) -> None:
    ids = [submit(api, id=f"job{i}")["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/jobs", params=params).json()
        assert len(page["jobs"]) <= 3 and all("stdout" not in job for job in page["jobs"])
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_list_pages_stay_stable_while_jobs_arrive(api: TestClient) -> None:
    for i in range(4):
        submit(api, id=f"old{i}")
    first = api.get("/api/jobs", params={"limit": 2}).json()
    submit(api, id="newer")
    second = api.get("/api/jobs", params={"limit": 10, "cursor": first["next"]}).json()
    assert [j["id"] for j in first["jobs"]] == ["old3", "old2"]
    assert [j["id"] for j in second["jobs"]] == ["old1", "old0"] and second["next"] is None


def test_list_filters(api: TestClient) -> None:
    submit(api, id="a1", queue="alpha", command="make test")
    submit(api, id="b1", queue="beta", command="make docs")
    submit(api, id="b2", queue="beta", command="echo hello")
    api.post("/api/jobs/b2/cancel")

    def ids(**params: Any) -> list[str]:
        response = api.get("/api/jobs", params=params)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["jobs"]]

    assert ids(queue="beta") == ["b2", "b1"]
    assert ids(status="cancelled") == ["b2"]
    assert ids(status="queued", queue="beta") == ["b1"]
    assert ids(q="make") == ["b1", "a1"]
    assert ids(q="a1") == ["a1"]
    assert ids(worker="w9") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"cursor": "x"}, "cursor"),
        ({"cursor": "1" * 400 + ":x"}, "cursor"),
    ],
)
def test_bad_list_parameters_get_422(api: TestClient, params: dict[str, Any], field: str) -> None:
    response = api.get("/api/jobs", params=params)
    assert response.status_code == 422
    assert response.json()["field"] == field


# -- cluster --------------------------------------------------------------------------------------


def test_config_read_and_patch(api: TestClient, jb: Client) -> None:
    assert api.get("/api/config").json()["policy"] == "least-loaded"
    response = api.patch("/api/config", json={"policy": "cpu", "max_jobs_per_worker": 3, "heartbeat_timeout": 7.5})
    assert response.status_code == 200
    assert response.json()["policy"] == "cpu"
    settings = jb.settings()
    assert (settings.policy, settings.max_jobs_per_worker, settings.heartbeat_timeout) == ("cpu", 3, 7.5)
    assert "round-robin" in api.get("/api/policies").json()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"policy": "cpu", "colour": "red"}, "colour"),
        ({"policy": "cpu", "heartbeat_timeout": -1}, "heartbeat_timeout"),
        ({"policy": "cpu", "max_jobs_per_worker": "many"}, "max_jobs_per_worker"),
        ({"max_jobs_per_worker": 2, "policy": "no-such-policy"}, "policy"),
        ({"policy": "json:nothing_here"}, "policy"),
    ],
)
def test_bad_config_changes_get_422_and_change_nothing(
    api: TestClient, jb: Client, changes: dict[str, Any], field: str
) -> None:
    response = api.patch("/api/config", json=changes)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert jb.settings().policy == "least-loaded" and jb.settings().max_jobs_per_worker == 0


def test_config_body_must_be_an_object_of_scalars(api: TestClient) -> None:
    assert api.patch("/api/config", json=["policy"]).status_code == 422
    assert api.patch("/api/config", json={"policy": ["cpu"]}).status_code == 422


def test_workers_overview_and_drain_of_an_unknown_worker(api: TestClient) -> None:
    assert api.get("/api/workers").json() == []
    overview = api.get("/api/overview").json()
    assert overview == {"workers": [], "waiting": {}, "jobs": {}}
    response = api.post("/api/workers/ghost/drain")
    assert response.status_code == 404 and "ghost" in response.json()["detail"]
    assert api.post("/api/workers/ghost/resume").status_code == 404


def test_events_rejects_a_bad_resume_id(api: TestClient) -> None:
    response = api.get("/api/events", params={"since": "yesterday"})
    assert (response.status_code, response.json()["field"]) == (422, "since")


def test_metrics_count_jobs_by_status_and_queue(api: TestClient) -> None:
    submit(api, queue="alpha")
    submit(api, queue="alpha")
    job = submit(api, queue="beta")
    api.post(f"/api/jobs/{job['id']}/cancel")
    response = api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert 'jobbalancer_jobs{queue="alpha",status="queued"} 2.0' in response.text
    assert 'jobbalancer_jobs{queue="beta",status="cancelled"} 1.0' in response.text
    assert api.get("/api/overview").json()["jobs"] == {"queued": 2, "cancelled": 1}


def test_a_redis_error_is_a_503_naming_it(api: TestClient, jb: Client) -> None:
    jb.redis.set(f"{jb.prefix}:jobs", "not a zset")  # the index key of the wrong type: Redis refuses the read
    response = api.get("/api/jobs")
    assert response.status_code == 503 and "WRONGTYPE" in response.json()["detail"]
