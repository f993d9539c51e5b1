"""``/api/stats/history``: samples of the finished-jobs total and the waiting depth, kept in Redis."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobbalancer import Client, stats


def now_ms(jb: Client) -> int:
    seconds, micros = jb.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def points(api: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/stats/history", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["points"]
    return found


def test_history_tells_jobs_finished_between_samples_and_the_waiting_depth(api: TestClient, jb: Client) -> None:
    sampler = stats.Sampler()
    assert api.get("/api/stats/history").json() == {
        "interval_s": 5.0,
        "now": pytest.approx(now_ms(jb) / 1000, abs=2),
        "points": [],
    }
    assert sampler.step(jb.redis, jb.keys, now_ms(jb))
    assert not sampler.step(jb.redis, jb.keys, now_ms(jb))  # the next one is due in 5 s
    for job in [jb.submit(f"echo {i}") for i in range(3)]:
        job.cancel()  # no cluster runs here: cancelled while queued, the jobs finish without running
    jb.redis.zadd(jb.keys.waiting("default"), {"0000000000000001:x": 0, "0000000000000002:y": 0})
    jb.redis.sadd(jb.keys.waitq, "default")
    assert sampler.step(jb.redis, jb.keys, now_ms(jb) + stats.SAMPLE_MS)

    first, second = points(api, minutes=1)
    assert (first["finished"], first["waiting"]) == (None, 0)  # nothing sampled before it
    assert (second["finished"], second["waiting"]) == (3, 2)
    assert first["at"] <= second["at"]

    assert sampler.step(jb.redis, jb.keys, now_ms(jb) + 2 * stats.SAMPLE_MS)
    assert points(api, minutes=1)[-1]["finished"] == 0


def test_another_dashboard_sees_the_same_history(api: TestClient, jb: Client, redis_url: str, prefix: str) -> None:
    stats.Sampler().step(jb.redis, jb.keys, now_ms(jb))
    other = Client(redis_url, prefix)
    try:
        _now, seen = stats.history(other.redis, other.keys, 15)
    finally:
        other.close()
    assert [(p.finished, p.waiting) for p in seen] == [(p["finished"], p["waiting"]) for p in points(api)]


def test_history_is_capped(jb: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "HISTORY_SAMPLES", 10)
    sampler = stats.Sampler(every_ms=0)
    for _ in range(500):
        sampler.step(jb.redis, jb.keys, now_ms(jb))
    assert jb.redis.xlen(jb.keys.history) <= 110  # trimmed in whole stream nodes of up to 100 entries


def test_a_counter_reset_counts_anew(api: TestClient, jb: Client) -> None:
    jb.redis.xadd(jb.keys.history, {"finished": 50, "waiting": 0})
    jb.redis.xadd(jb.keys.history, {"finished": 4, "waiting": 1})  # <p>:stats was deleted in between
    assert [p["finished"] for p in points(api)] == [None, 4]


@pytest.mark.parametrize("minutes", ["0", "-5", str(stats.HISTORY_MINUTES + 1), "soon"])
def test_minutes_out_of_range_is_refused(api: TestClient, minutes: str) -> None:
    response = api.get("/api/stats/history", params={"minutes": minutes})
    assert response.status_code == 422 and response.json()["field"] == "minutes"
