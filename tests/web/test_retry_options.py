"""Over HTTP, ``retries: 0`` is kept against a queue's default; left out, the queue's default applies.

The job detail carries the retry state (failures, next retry) that the page shows.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from jobbalancer import Client


def test_explicit_zero_retries_is_kept_and_a_missing_one_takes_the_queue_default(api: TestClient, jb: Client) -> None:
    jb.set_queue_defaults("flaky", retries=4)
    zero = api.post("/api/jobs", json={"command": "exit 1", "queue": "flaky", "retries": 0})
    left_out = api.post("/api/jobs", json={"command": "exit 1", "queue": "flaky"})
    assert (zero.status_code, left_out.status_code) == (201, 201)
    assert (zero.json()["retries"], left_out.json()["retries"]) == (0, 4)
    assert jb.record(zero.json()["id"]).retries == 0 and jb.record(left_out.json()["id"]).retries == 4
    refused = api.post("/api/jobs", json={"command": "exit 1", "retries": -1})
    assert refused.status_code == 422


def test_the_job_detail_shows_a_retry_waiting_out_its_backoff(api: TestClient, jb: Client) -> None:
    job_id = api.post("/api/jobs", json={"command": "exit 1", "retries": 2, "backoff": 30}).json()["id"]
    assert api.get(f"/api/jobs/{job_id}").json().get("retry_at") is None
    # the state complete.lua leaves after a failed first attempt (retry_later in _lib.lua)
    jb.redis.hset(f"{jb.prefix}:job:{job_id}", mapping={"attempts": 1, "failures": 1, "retry_at": 1_900_000_000_500})
    shown = api.get(f"/api/jobs/{job_id}").json()
    assert (shown["failures"], shown["retry_at"], shown["backoff"]) == (1, 1_900_000_000.5, 30)
