"""The served API in front of a real cluster: jobs run, output streams, workers drain, events flow."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx2

from jobbalancer.balancer.fleet import paced_prefetch
from tests.e2e.conftest import Cluster
from tests.helpers import wait_for
from tests.web.conftest import Live


def finished(live: Live, job_id: str) -> dict[str, Any] | None:
    job: dict[str, Any] = live.client.get(f"/api/jobs/{job_id}").json()
    return job if job["status"] not in ("queued", "assigned", "running") else None


def sse_messages(response: httpx2.Response, until: Any, limit: int = 500) -> list[tuple[str, Any]]:
    """Parse an event stream until ``until(messages)`` is true (or ``limit`` messages)."""
    messages: list[tuple[str, Any]] = []
    event, data = "message", []
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            messages.append((event, json.loads("\n".join(data))))
            event, data = "message", []
            if until(messages) or len(messages) >= limit:
                break
    return messages


def test_a_submitted_command_runs_and_its_output_streams(live_cluster: tuple[Live, Cluster]) -> None:
    live, _cluster = live_cluster
    created = live.client.post("/api/jobs", json={"command": "echo one; sleep 0.5; echo two >&2; echo three"})
    assert created.status_code == 201
    job_id = created.json()["id"]
    with live.client.stream("GET", f"/api/jobs/{job_id}/logs", params={"follow": "true"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(response, lambda m: m[-1][0] == "end")
    out = "".join(data for event, data in messages if event == "stdout")
    err = "".join(data for event, data in messages if event == "stderr")
    assert (out, err) == ("one\nthree\n", "two\n")
    assert messages[-1] == ("end", {"status": "succeeded", "exit_code": 0, "error": None})
    job = wait_for(lambda: finished(live, job_id), 10, what="job finished")
    assert job["stdout"] == "one\nthree\n" and job["worker"] in ("w1", "w2")
    logs = live.client.get(f"/api/jobs/{job_id}/logs").json()
    assert (logs["finished"], logs["stdout"], logs["stderr"]) == (True, "one\nthree\n", "two\n")
    statuses = [event["status"] for event in live.client.get(f"/api/jobs/{job_id}/events").json()]
    assert statuses[-2:] == ["running", "succeeded"]


def test_a_call_runs_and_returns_its_result(live_cluster: tuple[Live, Cluster]) -> None:
    live, _cluster = live_cluster
    job_id = live.client.post("/api/jobs", json={"func": "workers.tasks:add", "args": [2, 3]}).json()["id"]
    job = wait_for(lambda: finished(live, job_id), 15, what="call finished")
    assert (job["status"], job["result"]) == ("succeeded", 5)


def test_terminating_a_running_job_kills_it(live_cluster: tuple[Live, Cluster]) -> None:
    live, _cluster = live_cluster
    job_id = live.client.post("/api/jobs", json={"command": "echo started; sleep 60"}).json()["id"]
    wait_for(lambda: live.client.get(f"/api/jobs/{job_id}/logs").json()["stdout"] == "started\n", 15, what="running")
    assert live.client.post(f"/api/jobs/{job_id}/cancel").json() == {"id": job_id, "outcome": "cancelling"}
    job = wait_for(lambda: finished(live, job_id), 15, what="job cancelled")
    assert (job["status"], job["exit_code"]) == ("cancelled", 130)


def test_a_realtime_job_no_worker_can_take_is_409_rejected(live_cluster: tuple[Live, Cluster]) -> None:
    live, _cluster = live_cluster
    blockers = [live.client.post("/api/jobs", json={"command": "sleep 30"}).json()["id"] for _ in range(4)]
    wait_for(lambda: sum(w["running"] for w in live.client.get("/api/workers").json()) == 4, 15, what="slots full")
    response = live.client.post("/api/jobs", json={"command": "echo now", "realtime": True})
    assert response.status_code == 409
    assert response.json()["status"] == "rejected" and response.json()["command"] == "echo now"
    for job_id in blockers:
        live.client.post(f"/api/jobs/{job_id}/cancel")
    wait_for(lambda: sum(w["running"] for w in live.client.get("/api/workers").json()) == 0, 15, what="slots free")
    ok = live.client.post("/api/jobs", json={"command": "echo now", "realtime": True})
    assert ok.status_code == 201 and ok.json()["status"] in ("assigned", "running", "succeeded")


def test_a_drained_worker_takes_no_new_jobs(live_cluster: tuple[Live, Cluster]) -> None:
    live, _cluster = live_cluster
    response = live.client.post("/api/workers/w1/drain")
    assert response.status_code == 202 and response.json() == {"name": "w1", "state": "draining"}

    def states() -> dict[str, str]:
        return {w["name"]: w["state"] for w in live.client.get("/api/workers").json()}

    wait_for(lambda: states() == {"w1": "draining", "w2": "running"}, 10, what="w1 draining")
    ids = [live.client.post("/api/jobs", json={"command": "echo x"}).json()["id"] for _ in range(6)]
    jobs = [wait_for(lambda job_id=job_id: finished(live, job_id), 20, what="job done") for job_id in ids]
    assert {job["worker"] for job in jobs} == {"w2"}
    metrics = live.client.get("/metrics").text
    assert 'jobbalancer_worker_draining{worker="w1"} 1.0' in metrics
    assert 'jobbalancer_worker_slots{worker="w2"} 2.0' in metrics
    assert live.client.post("/api/workers/w1/resume").json() == {"name": "w1", "state": "running"}
    wait_for(lambda: states()["w1"] == "running", 10, what="w1 takes jobs again")


def test_the_event_stream_shows_job_and_worker_changes(live_cluster: tuple[Live, Cluster]) -> None:
    live, cluster = live_cluster
    submitted: list[str] = []

    def submit_when_connected() -> None:
        wait_for(lambda: len(collected) > 0, 10, what="first worker events")
        submitted.append(live.client.post("/api/jobs", json={"command": "echo hi"}).json()["id"])
        cluster.worker("w3")

    collected: list[tuple[str, Any]] = []
    thread = threading.Thread(target=submit_when_connected, daemon=True)
    thread.start()

    def done(messages: list[tuple[str, Any]]) -> bool:
        collected[:] = messages
        jobs = {d["status"] for e, d in messages if e == "job" and submitted and d["job"] == submitted[0]}
        workers = {d["name"] for e, d in messages if e == "worker"}
        return "succeeded" in jobs and "w3" in workers

    with (
        httpx2.Client(base_url=live.url, headers=live.client.headers, timeout=30) as client,
        client.stream("GET", "/api/events") as response,
    ):
        assert response.status_code == 200
        messages = sse_messages(response, done)
    thread.join(10)
    assert {("worker", "w1"), ("worker", "w2"), ("worker", "w3")} <= {(e, d.get("name")) for e, d in messages}
    statuses = [d["status"] for e, d in messages if e == "job" and d["job"] == submitted[0]]
    assert statuses[-1] == "succeeded" and "running" in statuses


def test_the_overview_shows_waiting_depth(live_cluster: tuple[Live, Cluster]) -> None:
    live, _cluster = live_cluster
    setting = live.client.get("/api/config").json()["prefetch"]
    prefetch = paced_prefetch(0.0, setting)  # jobs a worker that finished none lately may hold beyond its 2 slots
    held = 2 * (2 + prefetch)  # two workers
    ids = [live.client.post("/api/jobs", json={"command": "sleep 30"}).json()["id"] for _ in range(held + 2)]

    def two_waiting_four_running() -> bool:
        overview = live.client.get("/api/overview").json()
        return overview["waiting"].get("default") == 2 and sum(w["running"] for w in overview["workers"]) == 4

    wait_for(two_waiting_four_running, 15, what="4 jobs running (heartbeats lag a second), 2 waiting")
    assert 'jobbalancer_waiting_jobs{queue="default"} 2.0' in live.client.get("/metrics").text
    for job_id in ids:
        live.client.post(f"/api/jobs/{job_id}/cancel")
