"""Workers killed, frozen, poisoned and stopped while they run jobs: nothing lost, nothing left over."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from jobbalancer import Status
from tests.chaos.harness import HEARTBEAT_TIMEOUT_S, LONG, RECLAIM_SLACK_S, ChaosCluster
from tests.chaos.observe import Fault
from tests.helpers import wait_for

pytestmark = pytest.mark.chaos

KILL_ROUNDS = 8 if LONG else 1


def test_worker_sigkill_mid_job_reruns_its_jobs_and_kills_their_processes(chaos: ChaosCluster) -> None:
    chaos.balancer()
    for name in ("w1", "w2", "w3"):
        chaos.worker(name, 2, wait=False)
    chaos.wait_registered("w1", "w2", "w3")
    spares = iter(f"w{n}" for n in range(4, 4 + KILL_ROUNDS))
    victims = ["w1", "w2", "w3"]
    for round_ in range(KILL_ROUNDS):
        batch = chaos.submit(6, 1.5)
        victim = victims[round_ % len(victims)]
        held = wait_for(lambda v=victim: chaos.running_on(v), 20, what=f"{victim} running jobs")
        wait_for(lambda h=held: len(chaos.job_processes(h)) >= len(h), 5, what="the victim's job processes")
        chaos.signal(victim, signal.SIGKILL, "SIGKILL worker")
        killed_at = time.monotonic()
        wait_for(lambda h=held: not chaos.job_processes(h), 2.0, interval=0.05, what="its job processes to die")
        assert time.monotonic() - killed_at <= 2.0
        replacement = next(spares)
        victims[victims.index(victim)] = replacement
        chaos.worker(replacement, 2)
        # Each round on a cluster with room again: the figure is the reclaim, not a queue for slots.
        chaos.wait_finished(batch, 30)
    summary = chaos.verify("worker SIGKILL")
    assert summary.reclaims_s, "the killed workers' jobs were run again"
    assert max(summary.reclaims_s) <= HEARTBEAT_TIMEOUT_S + RECLAIM_SLACK_S


def test_healthy_job_five_times_the_heartbeat_timeout_is_never_reclaimed(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", 2)
    chaos.worker("w2", 2)
    ids = chaos.submit(2, 5 * HEARTBEAT_TIMEOUT_S)
    summary = chaos.verify("long healthy job", max_duplicates=0)
    assert [e.attempt for e in chaos.executions()] == [1, 1]
    assert all(chaos.client.record(job_id).attempts == 1 for job_id in ids)
    assert "sent no heartbeat" not in chaos.log("b1")
    assert summary.reclaims_s == []


def test_worker_frozen_past_the_timeout_is_reclaimed_and_its_late_completion_fenced(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", 1)
    (job_id,) = chaos.submit(1, 1.0, then="echo attempt $JB_ATTEMPT")
    wait_for(lambda: chaos.running_on("w1"), 20, what="the job running on w1")
    chaos.signal("w1", signal.SIGSTOP, "SIGSTOP worker")
    chaos.worker("w2", 1)
    wait_for(lambda: chaos.statuses([job_id])[job_id] == Status.SUCCEEDED, 20, what="the job re-run on w2")
    # The job on w1 exited while w1 was frozen. Woken, w1 either reports it late and is fenced out,
    # or its heartbeat learns first that it was declared dead and it drops the attempt unrecorded.
    chaos.signal("w1", signal.SIGCONT)
    late = ("fenced out", "killed (lost), not recorded")
    wait_for(lambda: any(text in chaos.log("w1") for text in late), 15, what="w1 to drop its late outcome")
    record = chaos.client.record(job_id)
    assert (record.worker, record.attempts, record.stdout) == ("w2", 2, "attempt 2\n")
    # Attempt 1 may even start late: w1 froze after start.lua, before it spawned the command.
    assert sorted(e.attempt for e in chaos.executions()) == [1, 2]
    # w1 is back: it re-registered and takes work again.
    wait_for(lambda: "declared it dead" in chaos.log("w1"), 10, what="w1 to notice it was reclaimed")
    chaos.wait_registered("w1")
    more = chaos.submit(4, 0.5)
    chaos.verify("worker SIGSTOP")
    assert "w1" in {chaos.client.record(j).worker for j in more}


def _replace_dead_workers(chaos: ChaosCluster, stop: threading.Event) -> None:
    """A supervisor's job: a worker that died is replaced by a new one (under a new name)."""
    count = 10
    while not stop.wait(0.1):
        for label, proc in list(chaos.procs.items()):
            if label.startswith("w") and proc.poll() is not None and not label.endswith("-gone"):
                chaos.procs[f"{label}-gone"] = chaos.procs.pop(label)
                chaos.faults.append(Fault(time.time(), "poison", label))
                count += 1
                chaos.worker(f"w{count}", 1, wait=False)


def test_poison_job_that_kills_its_worker_is_dead_lettered_while_others_flow(chaos: ChaosCluster) -> None:
    chaos.balancer()
    for name in ("w1", "w2", "w3"):
        chaos.worker(name, 1, wait=False)
    chaos.wait_registered("w1", "w2", "w3")
    stop = threading.Event()
    supervisor = threading.Thread(target=_replace_dead_workers, args=(chaos, stop), daemon=True)
    supervisor.start()
    try:
        poison = chaos.submit_one(f'echo "$JB_JOB_ID $JB_ATTEMPT $$" >> {chaos.ledger}; kill -9 $PPID; sleep 5')
        others = []
        deadline = time.monotonic() + 60
        while chaos.statuses([poison])[poison] not in {Status.FAILED} and time.monotonic() < deadline:
            others += chaos.submit(2, 0.2)
            time.sleep(0.5)
        summary = chaos.verify("poison job", expect={poison: Status.FAILED})
    finally:
        stop.set()
        supervisor.join(5)
    record = chaos.client.record(poison)
    assert record.attempts == 3 and "poison limit" in (record.error or "")
    dead = chaos.client.redis.xrange(f"{chaos.prefix}:dead")
    assert [(fields["id"], "poison limit" in fields["reason"]) for _id, fields in dead] == [(poison, True)]
    finished_meanwhile = [j for j in others if chaos.client.record(j).finished_at < record.finished_at]
    assert finished_meanwhile, "other jobs kept flowing while the poison job killed workers"
    assert summary.duplicates == 2  # the poison job's own three attempts


def test_sigterm_drains_and_a_second_sigterm_hands_back_at_once(chaos: ChaosCluster) -> None:
    chaos.balancer()
    chaos.worker("w1", 2, "--shutdown-timeout", "60")
    drained = chaos.submit(2, 1.5)
    wait_for(lambda: len(chaos.running_on("w1")) == 2, 20, what="two jobs running on w1")
    chaos.worker("w2", 2)
    chaos.signal("w1", signal.SIGTERM, "SIGTERM worker")
    assert chaos.procs["w1"].wait(20) == 0
    assert {chaos.client.record(j).worker for j in drained} == {"w1"}  # finished there, not re-run

    chaos.worker("w3", 4)
    cold = chaos.submit(2, 30)
    wait_for(lambda: chaos.running_on("w2") and chaos.running_on("w3"), 20, what="a job running on w2 and w3")
    (moved,) = chaos.running_on("w2")
    chaos.signal("w2", signal.SIGTERM, "SIGTERM worker")
    wait_for(lambda: "stopping gracefully" in chaos.log("w2"), 10, what="w2 draining")
    chaos.signal("w2", signal.SIGTERM, "SIGTERM worker")
    stopped_at = time.monotonic()
    wait_for(lambda: moved in chaos.running_on("w3"), HEARTBEAT_TIMEOUT_S, what="w2's job running on w3")
    assert time.monotonic() - stopped_at < HEARTBEAT_TIMEOUT_S
    assert chaos.procs["w2"].wait(10) == 0
    for job_id in cold:
        chaos.client.cancel(job_id)
    chaos.verify("SIGTERM drain and cold stop", expect=dict.fromkeys(cold, Status.CANCELLED))
