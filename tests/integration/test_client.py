"""The Python API on its own (no workers): module-level helpers, idempotency, listing, waiting."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

import jobbalancer
from jobbalancer import Client, InvalidJob, NoSuchJob, Status, WaitTimeout
from jobbalancer import client as client_module
from jobbalancer.errors import JobStateError
from jobbalancer.job import Options, Spec
from tests.helpers import wait_for


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


def test_a_batch_stores_each_job_as_a_single_submit_would(client: Client) -> None:
    spec = Spec.for_call("tasks:echo", ({"a": 1},))
    parent = client.enqueue("tasks:noop")
    items = [
        (spec, Options()),
        (spec, Options(retries=2, backoff_s=1.5)),
        (spec, Options()),
        (spec, Options(depends_on=[parent.id])),  # type: ignore[arg-type]  # a list: unhashable, still taken
        (Spec.for_command("true"), Options(queue="fast", priority=4, id="mine")),
    ]
    jobs = client.submit_many(items)
    records = [client.record(job.id) for job in jobs]
    assert len({job.id for job in jobs}) == 5 and jobs[4].id == "mine"
    assert [(r.queue, r.priority, r.retries, r.backoff) for r in records] == [
        ("default", 0, 0, None), ("default", 0, 2, 1.5), ("default", 0, 0, None), ("default", 0, 0, None),
        ("fast", 4, 0, None),
    ]  # fmt: skip
    assert records[0].spec == records[1].spec == {"func": "tasks:echo", "args": [{"a": 1}], "kwargs": {}}
    assert records[3].depends_on == (parent.id,) and records[4].spec == {"command": "true"}


def test_equal_options_of_a_wrong_type_are_still_refused_in_a_batch(client: Client) -> None:
    spec = Spec.for_call("tasks:noop")
    for bad in (Options(retries=1.0), Options(priority=0.0)):  # type: ignore[arg-type]  # equal to 1 and 0
        with pytest.raises(InvalidJob):
            client.submit_many([(spec, Options(retries=1)), (spec, Options(priority=0)), (spec, bad)])
    assert client.jobs() == []  # a refused batch writes nothing


def test_a_big_batch_goes_in_several_script_calls_and_keeps_its_order(client: Client) -> None:
    ids = [f"b{i:03d}" for i in range(250)]  # three submit.lua calls
    client.submit("true", id="b007")  # already there: left as it is, the rest of the batch stands
    items = [(Spec.for_command(f"echo {i}"), Options(id=job_id)) for i, job_id in enumerate(ids)]
    items.append((Spec.for_command("true"), Options(id="last", depends_on=("b249",))))  # on a job of the batch
    jobs = client.submit_many(items)
    assert [job.id for job in jobs] == [*ids, "last"]
    inbox = [fields["id"] for _entry, fields in client.redis.xrange(client.keys.inbox)]  # type: ignore[union-attr]
    assert inbox == ["b007", *(job_id for job_id in ids if job_id != "b007")]
    assert client.record("b007").spec == {"command": "true"} and client.record("b249").spec == {"command": "echo 249"}
    last = client.record("last")
    assert last.status is Status.QUEUED and last.depends_on == ("b249",)


def test_submit_lua_refuses_arguments_that_do_not_make_whole_jobs(client: Client) -> None:
    old_form = ("x", "command", '{"command":"true"}', "default", "0", "0", "", "0")  # no extra: 8, not 9
    with pytest.raises(redis.ResponseError, match="9 arguments per job; got 8"):
        client.scripts.submit(client.prefix, *old_form)
    assert client.jobs() == []


def test_a_waiter_reads_the_final_record_with_its_wake_up(client: Client) -> None:
    job = client.submit("true")
    waiter: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: waiter.update(record=job.wait(timeout=30)))
    thread.start()
    wait_for(lambda: client.redis.exists(f"{client.prefix}:job:{job.id}:out"), 10, what="the waiter's marker")
    client.redis.hset(f"{client.prefix}:job:{job.id}", mapping={"status": "running"})
    client.redis.xadd(f"{client.prefix}:job:{job.id}:out", {"fd": "1", "data": "hi\n"})  # output first, then the end
    client.redis.hset(f"{client.prefix}:job:{job.id}", mapping={"status": "succeeded", "stdout": "hi\n"})
    client.redis.xadd(f"{client.prefix}:job:{job.id}:out", {"end": "succeeded"})
    thread.join(30)
    assert waiter["record"].status is Status.SUCCEEDED and waiter["record"].stdout == "hi\n"
