"""Job dependencies with real workers: chains, fan-in, failure propagation, after-any, refusals."""

from __future__ import annotations

from pathlib import Path

from jobbalancer import Status
from tests.e2e.conftest import Cluster


def test_a_chain_runs_in_order_one_after_another(running: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "order"
    previous = running.client.submit(f"sleep 0.3; echo 0 >> {log}")
    chain = [previous]
    for n in range(1, 6):
        previous = running.client.submit(f"echo {n} >> {log}", depends_on=[previous])
        chain.append(previous)
    assert chain[1].status() is Status.QUEUED  # waits while the head sleeps, though slots are free
    records = [job.wait(30) for job in chain]
    assert {record.status for record in records} == {Status.SUCCEEDED}
    assert log.read_text().split() == [str(n) for n in range(6)]
    for before, after in zip(records, records[1:], strict=False):
        assert before.finished_at is not None and after.started_at is not None
        assert after.started_at >= before.finished_at


def test_fan_in_starts_after_every_dependency_succeeded(running: Cluster) -> None:
    parts = [running.client.submit(f"sleep 0.{n}; echo {n}") for n in (2, 4, 6)]
    joined = running.client.submit("echo joined", depends_on=parts)
    record = joined.wait(30)
    assert record.status is Status.SUCCEEDED and record.stdout == "joined\n"
    finished = [part.wait(1).finished_at or 0 for part in parts]
    assert record.started_at is not None and record.started_at >= max(finished)


def test_a_failure_cancels_the_chain_after_it_with_its_reason(running: Cluster) -> None:
    broken = running.client.submit("exit 3")
    second = running.jb("submit", "echo never", "--after", broken.id).stdout.strip()
    third = running.jb("submit", "echo never either", "--after", second, "--wait")
    assert third.returncode == 130
    assert f"dependency {broken.id} failed" in third.stderr
    assert running.client.record(second).status is Status.CANCELLED
    assert running.client.record(second).error == f"dependency {broken.id} failed"
    cleanup = running.jb("submit", "echo cleaned up", "--after", broken.id, "--after-any", "--wait")
    assert (cleanup.returncode, cleanup.stdout) == (0, "cleaned up\n")


def test_a_timed_out_dependency_cancels_its_dependent(running: Cluster) -> None:
    slow = running.client.submit("sleep 30", watchdog=0.5)
    after = running.client.submit("echo never", depends_on=[slow])
    assert slow.wait(30).status is Status.TIMED_OUT
    record = after.wait(10)
    assert (record.status, record.error) == (Status.CANCELLED, f"dependency {slow.id} timed_out")
    assert record.started_at is None


def test_a_retried_dependency_holds_its_dependent_until_it_succeeds(running: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    flaky = running.client.submit(f"test -f {marker} || {{ touch {marker}; exit 1; }}", retries=1)
    after = running.client.submit("echo after the retry", depends_on=[flaky])
    assert after.result(timeout=30) == "after the retry\n"
    assert flaky.record().attempts == 2


def test_unknown_dependencies_and_cycles_are_refused_at_submit(running: Cluster) -> None:
    unknown = running.jb("submit", "true", "--after", "no-such-job")
    assert unknown.returncode == 2
    assert "depends on 'no-such-job', which does not exist" in unknown.stderr
    running.jb("submit", "sleep 5", "--id", "first", "--watchdog", "10")
    running.jb("submit", "true", "--id", "second", "--after", "first")
    cycle = running.jb("submit", "true", "--id", "first", "--after", "second")
    assert cycle.returncode == 2 and "a dependency cycle" in cycle.stderr
    lonely = running.jb("submit", "true", "--after-any")
    assert lonely.returncode == 2 and "--after-any needs --after" in lonely.stderr
