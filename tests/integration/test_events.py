"""``<p>:events``: one entry per status and worker for the jobs a script call changed, read back per job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobbalancer import Client, Status
from jobbalancer.job import Options, Spec


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[Client]:
    the_client = Client(redis_url, prefix)
    yield the_client
    the_client.close()


def test_a_bulk_submit_writes_one_entry_naming_every_job(client: Client) -> None:
    jobs = client.submit_many((Spec.for_command("true"), Options()) for _ in range(40))
    entries = client.redis.xrange(client.keys.events)
    assert [fields["status"] for _entry, fields in entries] == ["queued"]
    assert entries[0][1]["ids"].split() == [job.id for job in jobs]
    changes = client.events("0-0")
    assert [(change["id"], change["status"]) for _entry, change in changes] == [(job.id, "queued") for job in jobs]
    seventh = {"id": jobs[7].id, "status": "queued", "worker": ""}
    assert client.recent_events(5, jobs[7].id) == [(entries[0][0], seventh)]
    assert [change["id"] for _entry, change in client.recent_events(3)] == [job.id for job in jobs[-3:]]


def test_a_job_changed_twice_in_one_call_keeps_its_order(client: Client) -> None:
    gone = client.submit("true")
    client.cancel(gone.id)
    start = client.redis.xrevrange(client.keys.events, count=1)[0][0]
    first, doomed, last = client.submit_many(
        [
            (Spec.for_command("true"), Options()),
            (Spec.for_command("true"), Options(depends_on=(gone.id,))),  # queued, then cancelled at once
            (Spec.for_command("true"), Options()),
        ]
    )
    assert doomed.status() is Status.CANCELLED
    changes = [(change["id"], change["status"]) for _entry, change in client.events(start)]
    assert [c for c in changes if c[0] == doomed.id] == [(doomed.id, "queued"), (doomed.id, "cancelled")]
    assert {(first.id, "queued"), (last.id, "queued")} <= set(changes)
    assert len(client.redis.xrange(client.keys.events, f"({start}", "+")) == 3  # queued x2, cancelled
