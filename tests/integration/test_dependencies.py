"""Dependencies at the Redis level: parking, refusals and cancel cascades, without workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobbalancer import Client, InvalidJob, Status


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[Client]:
    the_client = Client(redis_url, prefix)
    yield the_client
    the_client.close()


def inbox_ids(client: Client) -> list[str]:
    return [fields["id"] for _entry, fields in client.redis.xrange(client.keys.inbox) if "id" in fields]


def test_a_job_with_unmet_dependencies_is_queued_but_not_in_the_inbox(client: Client) -> None:
    first = client.submit("true")
    second = client.submit("true", depends_on=[first])
    record = client.record(second.id)
    assert record.status is Status.QUEUED
    assert record.depends_on == (first.id,) and record.after == "all"
    assert inbox_ids(client) == [first.id]
    assert second.info()["depends_on"] == [first.id]


def test_unknown_and_self_dependencies_are_refused_and_create_nothing(client: Client) -> None:
    with pytest.raises(InvalidJob, match="depends on 'nope', which does not exist"):
        client.submit("true", id="lonely", depends_on=["nope"])
    assert not client.redis.exists(client.keys.job("lonely"))
    with pytest.raises(InvalidJob, match="cannot depend on itself"):
        client.submit("true", id="me", depends_on=["me"])
    with pytest.raises(InvalidJob, match="after_any needs depends_on"):
        client.submit("true", after_any=True)


def test_resubmitting_a_job_after_its_own_dependent_is_refused_as_a_cycle(client: Client) -> None:
    client.submit("true", id="a")
    client.submit("true", id="b", depends_on=["a"])
    client.submit("true", id="c", depends_on=["b"])
    with pytest.raises(InvalidJob, match="cannot depend on 'c': c waits for a"):
        client.submit("true", id="a", depends_on=["c"])
    assert client.record("a").depends_on == ()


def test_cancelling_the_head_cancels_a_long_chain_in_one_step(client: Client) -> None:
    head = client.submit("true")
    previous = head
    chain = []
    for _ in range(300):
        previous = client.submit("true", depends_on=[previous])
        chain.append(previous)
    assert client.cancel(head.id) == "cancelled"
    records = [client.record(job.id) for job in chain]
    assert {record.status for record in records} == {Status.CANCELLED}
    # every job names the job that started it, not the cancel just before it
    assert {record.error for record in records} == {f"dependency {head.id} cancelled"}
    assert inbox_ids(client) == [head.id]


def test_a_dependency_that_already_failed_cancels_at_submit_unless_after_any(client: Client) -> None:
    gone = client.submit("true")
    client.cancel(gone.id)
    doomed = client.submit("true", depends_on=[gone])
    assert (doomed.status(), doomed.record().error) == (Status.CANCELLED, f"dependency {gone.id} cancelled")
    anyway = client.submit("true", depends_on=[gone], after_any=True)
    assert anyway.status() is Status.QUEUED and anyway.id in inbox_ids(client)


def test_after_any_waits_for_every_dependency_to_finish(client: Client) -> None:
    a, b = client.submit("true"), client.submit("true")
    joined = client.submit("true", depends_on=[a.id, b.id], after_any=True)
    client.cancel(a.id)
    assert joined.id not in inbox_ids(client)
    client.cancel(b.id)
    assert joined.status() is Status.QUEUED and joined.id in inbox_ids(client)


def test_cancelling_a_waiting_dependent_leaves_its_dependency_alone(client: Client) -> None:
    first = client.submit("true")
    second = client.submit("true", depends_on=[first])
    third = client.submit("true", depends_on=[second])
    client.cancel(second.id)
    assert first.status() is Status.QUEUED
    assert (third.status(), third.record().error) == (Status.CANCELLED, f"dependency {second.id} cancelled")
    assert not client.redis.exists(client.keys.deps(second.id))
