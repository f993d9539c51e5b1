"""The Python API on its own (no workers): module-level helpers, idempotency, listing, waiting."""

from __future__ import annotations

import pytest

import jobbalancer
from jobbalancer import Client, InvalidJob, NoSuchJob, Status, WaitTimeout
from jobbalancer import client as client_module
from jobbalancer.errors import JobStateError


@pytest.fixture
def client(redis_url: str, prefix: str) -> Client:
    return Client(redis_url, prefix)


def test_module_level_submit_and_enqueue_use_the_environment(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JB_REDIS_URL", redis_url)
    monkeypatch.setenv("JB_PREFIX", prefix)
    monkeypatch.setattr(client_module, "_default_client", None)
    command = jobbalancer.submit("make test", watchdog=600)
    call = jobbalancer.enqueue("tasks:fib", 10)
    check = Client(redis_url, prefix)
    assert check.record(command.id).spec == {"command": "make test"}
    assert check.record(call.id).spec == {"func": "tasks:fib", "args": [10], "kwargs": {}}
    assert check.record(command.id).watchdog == 600.0


def test_submit_is_idempotent_on_id_and_listing_is_newest_first(client: Client) -> None:
    first = client.submit("echo one", id="same")
    again = client.submit("echo two", id="same")
    client.enqueue_call("tasks:noop", id="other", priority=5, queue="fast")
    assert first.id == again.id == "same"
    assert client.record("same").spec["command"] == "echo one"
    assert [r.id for r in client.jobs()] == ["other", "same"]
    assert client.record("other").queue == "fast" and client.record("other").priority == 5
    assert [r.id for r in client.jobs(status="queued", limit=1)] == ["other"]


def test_waiting_times_out_and_state_errors_are_clear(client: Client) -> None:
    job = client.submit("true")
    with pytest.raises(WaitTimeout, match="still queued after 0.1s"):
        job.result(timeout=0.1)
    with pytest.raises(JobStateError, match="it is queued; cancel it first"):
        client.delete(job.id)
    assert job.cancel() == "cancelled"
    assert job.status() is Status.CANCELLED
    assert job.cancel() == "cancelled"  # already finished: reports the final status
    client.delete(job.id)
    with pytest.raises(NoSuchJob):
        job.status()


def test_bad_calls_are_refused_before_anything_is_written(client: Client) -> None:
    with pytest.raises(InvalidJob, match="JSON-serialisable"):
        client.enqueue("tasks:echo", {1, 2})
    with pytest.raises(InvalidJob, match="no importable path"):
        client.enqueue(lambda: None)
    assert client.jobs() == []


def test_a_record_edited_into_nonsense_does_not_hide_the_others(client: Client) -> None:
    good = client.submit("true")
    bad = client.submit("true")
    client.redis.hset(f"{client.prefix}:job:{bad.id}", "status", "exploded")
    assert [r.id for r in client.jobs()] == [good.id]
