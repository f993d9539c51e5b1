"""A submit while Redis is away: retried until it is back (safe: submits are idempotent by id),
or, past ``SUBMIT_RETRY_S``, refused with RedisUnavailable naming the jobs' ids."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobbalancer import client as client_module
from jobbalancer.client import Client
from jobbalancer.errors import RedisUnavailable
from jobbalancer.job import Options, Spec
from jobbalancer.server import EmbeddedRedis
from tests.helpers import free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", free_port()).start()
    yield server
    server.stop()


def test_a_submit_during_a_restart_waits_for_redis_and_lands_once(own_redis: EmbeddedRedis, prefix: str) -> None:
    client = Client(own_redis.url, prefix)
    before = client.submit("true")
    own_redis.stop()
    restarted = threading.Event()

    def restart() -> None:
        own_redis.start()
        restarted.set()

    timer = threading.Timer(0.5, restart)  # Redis comes back while the submit below is retrying
    timer.start()
    try:
        job = client.submit("echo back", id="after-restart")
    finally:
        timer.join()
    assert restarted.is_set()
    assert job.id == "after-restart" and job.record().status.value == "queued"
    assert before.record().status.value == "queued"  # the AOF kept the earlier one
    assert client.redis.xlen(client.keys.inbox) == 2  # one inbox entry each: nothing doubled


def test_a_submit_gives_up_after_the_retry_window_naming_its_jobs(
    own_redis: EmbeddedRedis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "SUBMIT_RETRY_S", 0.3)
    fresh, client = Client(own_redis.url, prefix), Client(own_redis.url, prefix)
    client.submit("true")  # this one has read the submit rules already: it gets as far as sending
    own_redis.stop()
    two = [(Spec.for_command("true"), Options(id=f"j{i}")) for i in (1, 2)]
    with pytest.raises(RedisUnavailable, match="to submit 2 job") as sent:
        client.submit_many(two)
    assert sent.value.job_ids == ["j1", "j2"]
    assert "submitting again under the same ids is safe" in str(sent.value)
    with pytest.raises(RedisUnavailable, match="none was stored") as unsent:
        fresh.submit_many(two)  # stopped while reading the rules: nothing was sent
    assert unsent.value.job_ids == []
    own_redis.start()
    jobs = client.submit_many(two)
    assert [job.record().status.value for job in jobs] == ["queued", "queued"]
