"""The leading balancer killed or frozen past its lease: a standby takes over, nothing is placed twice."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from jobbalancer import Status
from tests.chaos.harness import LONG, ChaosCluster
from tests.helpers import wait_for

pytestmark = pytest.mark.chaos

ROUNDS = 4 if LONG else 1
TAKEOVER_LIMIT_S = 6.0  # the lease (3 s) plus a standby's try (every 1 s), with room for a busy machine


class Load:
    """Submits a short job every 50 ms on a thread, so every fault lands on a busy balancer."""

    def __init__(self, chaos: ChaosCluster) -> None:
        self._chaos = chaos
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._chaos.submit(1, 0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _assigned_once(chaos: ChaosCluster) -> dict[str, int]:
    """Jobs assigned other than exactly once (no worker fault here, so once is right)."""
    wait_for(chaos.events.caught_up, 10, what="the event log")
    assigned = Counter(e.job_id for e in chaos.events.events if e.status == Status.ASSIGNED)
    return {job_id: assigned[job_id] for job_id in chaos.accepted if assigned[job_id] != 1}


def _fail_over(chaos: ChaosCluster, leader: str, standby: str, sig: signal.Signals) -> None:
    chaos.signal(leader, sig, f"{sig.name} balancer")
    started = time.monotonic()
    wait_for(lambda: chaos.leader() == standby, TAKEOVER_LIMIT_S, interval=0.02, what=f"{standby} to lead")
    chaos.takeovers_s.append(time.monotonic() - started)


def test_active_balancer_sigkill_standby_takes_over(chaos: ChaosCluster) -> None:
    chaos.balancer("b1")
    chaos.wait_leader("b1")
    chaos.worker("w1", 4, wait=False)
    chaos.worker("w2", 4, wait=False)
    chaos.wait_registered("w1", "w2")
    names = iter(f"b{n}" for n in range(2, 3 + ROUNDS))
    leader, standby = "b1", next(names)
    chaos.balancer(standby)
    load = Load(chaos)
    try:
        for _ in range(ROUNDS):
            wait_for(lambda: len(chaos.accepted) >= 10, 10, what="some load")
            _fail_over(chaos, leader, standby, signal.SIGKILL)
            leader, standby = standby, next(names)
            chaos.balancer(standby)
        before = len(chaos.accepted)
        wait_for(lambda: len(chaos.accepted) >= before + 10, 10, what="load after the takeover")
    finally:
        load.stop()
    summary = chaos.verify("balancer SIGKILL", max_duplicates=0)
    assert _assigned_once(chaos) == {}
    assert max(summary.takeovers_s) < TAKEOVER_LIMIT_S


def test_balancer_frozen_past_its_lease_is_fenced_when_it_wakes(chaos: ChaosCluster) -> None:
    chaos.balancer("b1")
    chaos.wait_leader("b1")
    chaos.balancer("b2")
    chaos.worker("w1", 4, wait=False)
    chaos.worker("w2", 4, wait=False)
    chaos.wait_registered("w1", "w2")
    load = Load(chaos)
    try:
        wait_for(lambda: len(chaos.accepted) >= 10, 10, what="some load")
        _fail_over(chaos, "b1", "b2", signal.SIGSTOP)
        before = len(chaos.accepted)
        wait_for(lambda: len(chaos.accepted) >= before + 10, 10, what="load after the takeover")
        chaos.signal("b1", signal.SIGCONT)
        wait_for(lambda: "lost" in chaos.log("b1"), 10, what="b1 to find it lost the lease")
        before = len(chaos.accepted)
        wait_for(lambda: len(chaos.accepted) >= before + 10, 10, what="load with both balancers awake")
    finally:
        load.stop()
    summary = chaos.verify("balancer SIGSTOP", max_duplicates=0)
    assert _assigned_once(chaos) == {}
    assert chaos.leader() == "b2"
    assert "lost the lease" in chaos.log("b1") or "writes were refused (fenced)" in chaos.log("b1")
    assert max(summary.takeovers_s) < TAKEOVER_LIMIT_S
